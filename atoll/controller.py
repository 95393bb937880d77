"""The composition root of ``atoll serve``: a controller alone, whose hosts join over the network.

It serves the native API (plain HTTP, loopback by default, as under ``atoll up``) and the cluster
listener (mTLS; see ``api/cluster_listener.py``), dials each member's agent through the generic RPC of
``atoll.wire``, marks silent hosts down from a background loop, and makes sure every host that connects
holds the starter image. Several controllers may share one PostgreSQL database: all serve the API, and
the singleton loops (host-down detection, image GC) run under a lease (``services/lease.py``) on one.
The cluster CA and the controller's own certificate are made on first start,
under ``DATA/cluster/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

from atoll.agent.images.starter import busybox_rootfs_tar
from atoll.api.app import create_app
from atoll.api.cluster_listener import cluster_app
from atoll.model.errors import NotFound
from atoll.model.ports import HostAgent
from atoll.node import GRACE, STARTER_CONFIG, STARTER_IMAGE, _file_chunks, gc_policy
from atoll.profiling import profiled
from atoll.services import controllers, failover, image_gc, images, liveness, membership
from atoll.services.clusterconf import ClusterConfig
from atoll.services.context import AgentRegistry, Controller
from atoll.services.lease import Lease
from atoll.services.secrets import SecretBox, seal_stored
from atoll.settings import Settings
from atoll.stopping import QuietServer, StopSignals
from atoll.store.db import open_database
from atoll.wire import pki
from atoll.wire.client import Channel, make_proxy
from atoll.wire.listener import https_server

log = logging.getLogger("atoll")


def load_or_make_ca(cluster_dir: Path) -> tuple[bytes, bytes, pki.Identity]:
    """The CA (key, cert) and the controller's identity, made once and kept."""
    cluster_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key, ca_cert = cluster_dir / "ca.key", cluster_dir / "ca.crt"
    if not ca_key.exists():
        key_pem, cert_pem = pki.make_ca()
        ca_key.touch(mode=0o600)
        ca_key.write_bytes(key_pem)
        ca_cert.write_bytes(cert_pem)
    ident = pki.Identity(key=cluster_dir / "controller.key", cert=cluster_dir / "controller.crt", ca=ca_cert)
    if not ident.exists():
        key_pem = pki.new_key_pem()
        cert = pki.issue(
            ca_key.read_bytes(),
            ca_cert.read_bytes(),
            pki.make_csr(key_pem, pki.CONTROLLER_CN),
            pki.CONTROLLER_CN,
            pki.CONTROLLER_NAME,
        )
        ident.write(key_pem, cert, ca_cert.read_bytes())
    return ca_key.read_bytes(), ca_cert.read_bytes(), ident


def host_connector(ident: pki.Identity) -> Any:
    client_context = ident.client_context()

    def connect(host_id: str, address: str) -> HostAgent:
        channel = Channel(f"https://{address}", client_context, pki.host_dns_name(host_id))
        return cast(HostAgent, make_proxy(HostAgent, channel, host_id=host_id, address=address))

    return connect


def starter_created(busybox: Path = Path("/bin/busybox")) -> str:
    """The starter's creation time is busybox's own mtime (the tar's too): every host builds the same
    image id from it, so the tag ``busybox:latest`` means one image across the cluster."""
    when = datetime.datetime.fromtimestamp(int(busybox.stat().st_mtime), datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")


STREAM_CHUNK = 64 << 10
"""Bytes per write of the starter image to a host. A TLS connection's outgoing memory buffer grows to
the largest write and keeps that size while the connection lives: with 1 MiB writes the controller held
about 1.5 MB per connected host (1.5 GB at 1,000 hosts)."""


class StarterImages:
    """Gives each host that connects the starter image (built here, deterministic, so every host ends up
    with the same image id)."""

    def __init__(self, ctl_ref: list[Controller], tmp: Path) -> None:
        self._ctl_ref = ctl_ref
        self._tar = tmp / "starter-rootfs.tar"
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    RETRIES = 5
    """A host that could not be reached (e.g. busy with a thousand others joining) is tried again."""

    def __call__(self, agent: HostAgent, attempt: int = 0) -> None:
        task = asyncio.get_running_loop().create_task(self._ensure(agent, attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ensure(self, agent: HostAgent, attempt: int = 0) -> None:
        ctl = self._ctl_ref[0]
        try:
            with contextlib.suppress(NotFound):
                image = images.get_image(ctl, project="default", ref=STARTER_IMAGE)
                if await agent.image_present(image.id):
                    membership.record_image_on_host(ctl, image_id=image.id, host_id=agent.host_id)
                    return
            async with self._lock:
                if not self._tar.exists():
                    await asyncio.to_thread(busybox_rootfs_tar, self._tar)
            record = await agent.build_image(
                _file_chunks(self._tar, STREAM_CHUNK), STARTER_CONFIG, starter_created()
            )
            images.catalog(
                ctl,
                project="default",
                records=[dataclasses.replace(record, repo_tags=[STARTER_IMAGE])],
                host_id=agent.host_id,
                public=True,
            )
            log.info("host %s holds the starter image", agent.host_id)
        except Exception:
            log.exception("could not give host %s the starter image", agent.host_id)
            if attempt < self.RETRIES:
                await asyncio.sleep(2.0 * 2**attempt)
                agents = self._ctl_ref[0].agents
                if agent.host_id in agents and agents.get(agent.host_id) is agent:  # still this connection
                    self(agent, attempt + 1)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def watch_heartbeats(ctl: Controller, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            failover.hosts_down(ctl, membership.mark_silent_hosts_down(ctl))
        except Exception:
            log.exception("heartbeat check failed")


def advertised(settings: Settings) -> str:
    if settings.cluster_advertise:
        return settings.cluster_advertise
    host = settings.cluster_host
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"{host}:{settings.cluster_port}"


async def serve(settings: Settings) -> None:
    # The first SIGINT or SIGTERM stops in order, a second at once (atoll/stopping.py).
    with StopSignals() as stop:
        await _serve(settings, stop)


async def _serve(settings: Settings, stop: StopSignals) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    (settings.data_dir / "tmp").mkdir(exist_ok=True)
    sessions = open_database(settings.database_url)
    # Controllers sharing the database share its CA: adopt it, or publish the one made here.
    controllers.share_ca(sessions, settings.data_dir / "cluster")
    ca_key, ca_cert, ident = load_or_make_ca(settings.data_dir / "cluster")
    controllers.register(sessions, address=advertised(settings), api_url=settings.api_url)
    ctl_ref: list[Controller] = []
    starter = StarterImages(ctl_ref, settings.data_dir / "tmp")
    ctl = Controller(
        sessions=sessions,
        agents=AgentRegistry(),
        cluster=ClusterConfig(
            ca_key_pem=ca_key,
            ca_cert_pem=ca_cert,
            address=advertised(settings),
            connect=host_connector(ident),
            heartbeat_timeout=settings.heartbeat_timeout,
            on_host_connected=starter,
            on_host_returned=lambda host_id: failover.host_returns(ctl_ref[0], host_id),
            controller_expiry=controllers.EXPIRY_INTERVALS * settings.lease_interval,
        ),
    )
    ctl_ref.append(ctl)
    ctl.secrets = SecretBox.in_dir(settings.data_dir)
    seal_stored(ctl.sessions, ctl.secrets)  # logins stored before encryption existed
    membership.connect_known_hosts(ctl)
    api = QuietServer.serving(create_app(ctl), settings.api_host, settings.api_port, GRACE)
    listener = https_server(
        cluster_app(ctl),
        ident,
        settings.cluster_host,
        settings.cluster_port,
        accept=lambda _peer: True,  # joins come without a certificate; /rpc checks it per call
        require_client_cert=False,
    )
    stop.on_stop(lambda: setattr(api, "should_exit", True))  # which then stops the listener too
    listening = asyncio.create_task(listener.serve())
    lease = Lease(settings.database_url, interval=settings.lease_interval)
    check = max(0.2, settings.heartbeat_timeout / 5)

    def singleton_loops() -> list[Coroutine[Any, Any, None]]:
        # Only the lease holder runs these; every controller serves the API and follows host states.
        return [
            watch_heartbeats(ctl, check),
            image_gc.run(ctl, gc_policy(settings)),
            controllers.expire_forever(
                sessions, controllers.EXPIRY_INTERVALS * settings.lease_interval, settings.lease_interval
            ),
        ]

    # Unchanged heartbeats are written in batches; well within the timeout (services/liveness.py).
    ctl.liveness.flush_interval = min(liveness.FLUSH_INTERVAL, settings.heartbeat_timeout / 10)
    background = [
        asyncio.create_task(liveness.flush_forever(ctl.liveness, sessions, ctl.members)),
        asyncio.create_task(lease.run(singleton_loops)),
        asyncio.create_task(
            controllers.keep_alive(sessions, advertised(settings), settings.api_url, settings.lease_interval)
        ),
        asyncio.create_task(controllers.follow_hosts_forever(ctl, check)),
    ]
    print(
        f"Atoll controller is up: API {settings.api_url}/v1, cluster listener {advertised(settings)}"
        f" (CA {pki.fingerprint(ca_cert)}), data in {settings.data_dir}\n"
        "Add a host: `atoll token create`, then `atoll join TOKEN` on that host.",
        flush=True,
    )
    try:
        await api.serve()
    finally:
        listener.should_exit = True
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await listening
        await starter.close()
        sessions.kw["bind"].dispose()
        log.info("stopped")


def run_serve(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per RPC call otherwise
    with profiled():
        asyncio.run(serve(settings))
