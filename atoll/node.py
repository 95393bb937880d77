"""The composition root of ``atoll up``: controller and agent of this host, in one process.

This is the one module allowed to see both sides. It wires the agent to the controller through the
in-process ``LocalControlPlane`` and registers the agent as the controller's only host.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from atoll.agent.agent import Agent, AgentConfig
from atoll.agent.images.starter import busybox_rootfs_tar
from atoll.agent.registry.options import RegistryOptions, parse_insecure, parse_mirrors
from atoll.api.app import create_app
from atoll.api.docker.app import create_docker_server
from atoll.api.docker.tls import TlsConfigError, TlsFiles, server_context
from atoll.heap import keep_heap_small, limit_malloc_arenas, settle_after_startup
from atoll.model.errors import NotFound
from atoll.model.image import ImageConfig
from atoll.services import image_gc, imagehosts, images
from atoll.services.addrpools import parse_pools
from atoll.services.context import AgentRegistry, Controller
from atoll.services.control import LocalControlPlane
from atoll.services.hosts import register_host, unregister_host
from atoll.services.mounts import BindPolicy
from atoll.services.secrets import SecretBox, seal_stored
from atoll.settings import Settings
from atoll.stopping import QuietServer, StopSignals
from atoll.store.db import open_database

log = logging.getLogger("atoll")

STARTER_IMAGE = "busybox:latest"
STARTER_CONFIG = ImageConfig(
    cmd=["sh"],
    env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    labels={"org.opencontainers.image.description": "busybox from the host's busybox-static"},
)


def host_id(data_dir: Path) -> str:
    """A host's identity is made once and kept with its data."""
    path = data_dir / "host-id"
    if not path.exists():
        path.write_text(secrets.token_hex(16) + "\n")
    return path.read_text().strip()


async def _file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


async def ensure_starter_image(ctl: Controller, agent: Agent) -> None:
    """An image that works offline, made from the host's busybox-static; public to every project."""
    try:
        image = images.get_image(ctl, project="default", ref=STARTER_IMAGE)
        if await agent.image_present(image.id):
            return
    except NotFound:
        pass
    with tempfile.TemporaryDirectory(dir=agent.config.data_dir / "tmp") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        await asyncio.to_thread(busybox_rootfs_tar, tar)
        await images.build_image(
            ctl,
            project="default",
            chunks=_file_chunks(tar),
            tag=STARTER_IMAGE,
            config=STARTER_CONFIG,
            public=True,
        )
    log.info("imported the starter image %s", STARTER_IMAGE)


def registry_options(settings: Settings) -> RegistryOptions:
    return RegistryOptions(
        mirrors=parse_mirrors(settings.registry_mirrors),
        insecure=parse_insecure(settings.insecure_registries),
        ca_dir=settings.registry_ca_dir,
    )


def gc_policy(settings: Settings) -> image_gc.GcPolicy:
    return image_gc.GcPolicy(
        interval=settings.image_gc_interval,
        high=settings.image_gc_high,
        low=settings.image_gc_low,
        min_age=settings.image_gc_min_age,
    )


GRACE = 5
"""Seconds a stop waits for requests in flight (a followed log or an attach would wait forever)."""


async def serve(settings: Settings) -> None:
    # The first SIGINT or SIGTERM stops in order, a second at once (atoll/stopping.py). Installed first:
    # a signal during start-up then lets the start finish and stops right after it.
    with StopSignals() as stop:
        await _serve(settings, stop)


async def _serve(settings: Settings, stop: StopSignals) -> None:
    docker_tls = docker_tls_context(settings)  # a bad file stops the start before anything runs
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    ctl = Controller(
        sessions=open_database(settings.database_url),
        agents=AgentRegistry(),
        address_pools=parse_pools(settings.default_address_pools, "ATOLL_DEFAULT_ADDRESS_POOLS"),
    )
    ctl.bind_mounts = BindPolicy.parse(settings.bind_mounts)
    ctl.secrets = SecretBox.in_dir(settings.data_dir)
    seal_stored(ctl.sessions, ctl.secrets)  # logins stored before encryption existed
    agent = await Agent.open(
        AgentConfig(
            host_id=host_id(settings.data_dir),
            data_dir=settings.data_dir,
            run_dir=settings.run_dir,
            cgroup_parent=settings.cgroup_parent,
            runtime=settings.runtime,
            reconcile_interval=settings.reconcile_interval,
            registries=registry_options(settings),
            net_prefix=settings.net_prefix,
            nft_table=settings.nft_table,
            underlay_ip=settings.underlay_ip,
            vxlan_port=settings.vxlan_port,
            publish_pool=settings.publish_cidr,
            ip_forward=settings.ip_forward,
            big_tcp=settings.big_tcp,
            fast_path=settings.fast_path,
        ),
        LocalControlPlane(ctl),
    )
    register_host(
        ctl, agent, name=settings.host_name, runtime=agent.runtime_name, cgroup_version=agent.cgroup_version
    )
    await agent.start()
    await imagehosts.forget_lost(ctl, agent)  # a pull the host lost in a crash before its sync
    await ensure_starter_image(ctl, agent)
    server = QuietServer.serving(create_app(ctl), settings.api_host, settings.api_port, GRACE)
    stop.on_stop(lambda: setattr(server, "should_exit", True))
    docker = create_docker_server(ctl)
    for address in settings.docker_addresses:
        await docker.listen(address)
    if docker_tls is not None:
        await docker.listen(f"tcp://{settings.docker_tls}", tls=docker_tls)
    stop.on_stop(docker.stop_listening)
    print(
        f"Atoll is up: API {settings.api_url}/v1 (docs at {settings.api_url}/v1/docs), "
        f"runtime {agent.runtime_name}, cgroup v{agent.cgroup_version}, data in {settings.data_dir}\n"
        "Next, in another terminal:\n"
        "  .venv/bin/atoll run busybox echo hello\n"
        "  .venv/bin/atoll run -d --name web busybox httpd -f -p 8080 && .venv/bin/atoll ps\n"
        "Containers keep running if this process stops; `make up` again adopts them.",
        flush=True,
    )
    gc = asyncio.create_task(image_gc.run(ctl, gc_policy(settings)))
    log.debug("froze %d start-up objects", settle_after_startup())
    heap = asyncio.create_task(keep_heap_small())
    try:
        if not stop.requested:
            await server.serve()
    finally:
        # In order: no more requests, then the agent (its deferred removals finished, within a bound), then
        # the controller's record of this host. Containers keep running.
        gc.cancel()
        heap.cancel()
        await docker.close(GRACE)
        await agent.close()
        unregister_host(ctl, host_id=agent.host_id)
        engine = ctl.sessions.kw["bind"]
        engine.dispose()
        log.info("stopped; containers keep running")


def docker_tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.docker_tls:
        return None
    ca = Path(settings.docker_tls_ca) if settings.docker_tls_ca else None
    files = TlsFiles(cert=settings.docker_tls_cert, key=settings.docker_tls_key, ca=ca, verify=ca is not None)
    return server_context(files)


def run_up(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_malloc_arenas()
    try:
        asyncio.run(serve(settings))
    except TlsConfigError as e:
        raise SystemExit(f"atoll up: the Docker TLS listener cannot start: {e}") from None
