"""Many simulated hosts behind one mTLS listener, each answering with its own certificate.

The controller dials a host with the SNI name `<host-id>.hosts.atoll` and checks that the certificate it
gets carries that name. One listener therefore serves every simulated host: the TLS `sni_callback`
switches the connection to the context holding that host's certificate (issued to it at its own join),
and an unknown name is refused during the handshake. After the handshake, the context the connection
ended up with says which host it reached; the request scope carries that host id to the RPC resolver.
Only the controller's client certificate is admitted, as on a real agent.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from atoll.agent.simulated.host import SimulatedHost
from atoll.model.errors import Forbidden
from atoll.model.ports import HostAgent
from atoll.wire import pki
from atoll.wire.listener import KEEP_ALIVE, peer_protocol
from atoll.wire.server import rpc_routes
from atoll.wire.shapes import MethodShape

HOST_KEY = "atoll.simulated.host"


class HostContexts:
    """Server TLS contexts by SNI name, and the host each context belongs to."""

    def __init__(self) -> None:
        self._by_name: dict[str, ssl.SSLContext] = {}
        self._host_of: dict[int, str] = {}
        self._lock = threading.Lock()  # joins run in threads; the callback runs on the event loop

    def add(self, host_id: str, identity: pki.Identity) -> None:
        ctx = identity.server_context()
        with self._lock:
            self._by_name[pki.host_dns_name(host_id)] = ctx
            self._host_of[id(ctx)] = host_id

    def default(self) -> ssl.SSLContext:
        """The context connections start in: no certificate of its own, so a client that sends no
        (or an unknown) SNI name gets no host's certificate at all."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        with self._lock:
            first = next(iter(self._by_name.values()), None)
        if first is None:
            raise RuntimeError("no simulated host has joined yet")
        # The client certificate is verified against the CA of the context the handshake starts in.
        for ca in first.get_ca_certs(binary_form=True):
            ctx.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(ca))
        ctx.sni_callback = self._pick
        return ctx

    def _pick(self, conn: Any, name: str | None, _initial: ssl.SSLContext) -> int | None:
        with self._lock:
            ctx = self._by_name.get(name or "")
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        conn.context = ctx
        return None

    def host_of(self, transport: asyncio.BaseTransport) -> str | None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        with self._lock:
            return self._host_of.get(id(ssl_object.context))


def _protocol(contexts: HostContexts) -> type[Any]:
    base = peer_protocol(lambda peer: peer == pki.CONTROLLER_CN)

    class HostProtocol(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            host_id = contexts.host_of(transport)
            super().connection_made(transport)
            inner: Any = getattr(self, "app")  # noqa: B009 (set by the base class, untyped here)

            async def app(scope: Any, receive: Any, send: Any) -> None:
                scope[HOST_KEY] = host_id
                await inner(scope, receive, send)

            setattr(self, "app", app)  # noqa: B010

    return HostProtocol


def fleet_app(hosts: dict[str, SimulatedHost]) -> Starlette:
    def resolve(conn: HTTPConnection, _shape: MethodShape, _kwargs: dict[str, Any]) -> HostAgent:
        host = hosts.get(conn.scope.get(HOST_KEY) or "")
        if host is None:
            raise Forbidden("certificate: this connection reached no simulated host")
        return host

    return Starlette(routes=rpc_routes(HostAgent, resolve))


def fleet_server(
    hosts: dict[str, SimulatedHost], contexts: HostContexts, host: str, port: int
) -> uvicorn.Server:
    config = uvicorn.Config(
        fleet_app(hosts),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        http=_protocol(contexts),
        ws="websockets-sansio",
        ws_ping_interval=None,
        timeout_keep_alive=int(KEEP_ALIVE),
        ssl_context_factory=lambda _config, _default: contexts.default(),
        backlog=4096,
    )
    return uvicorn.Server(config)
