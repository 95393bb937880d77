"""An HTTPS listener with mutual TLS that knows who is calling.

uvicorn verifies client certificates but does not pass them to the app. ``peer_protocol`` subclasses its
h11 protocol: once the TLS handshake is done it reads the verified peer's common name, drops the
connection if ``accept`` says no (before a single request is read, so this also covers websockets), and
puts the name in every request's scope under ``PEER_KEY``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.requests import HTTPConnection
from uvicorn.protocols.http.h11_impl import H11Protocol

from atoll.stopping import QuietServer
from atoll.wire.pki import Identity, peer_common_name

PEER_KEY = "atoll.peer"

KEEP_ALIVE = 65.0
"""Idle seconds before the server closes a connection: longer than a client's pool keeps one
(`client.KEEP_ALIVE`), so the client always closes first, and longer than the heartbeat interval, so
a host's heartbeats reuse one TLS connection instead of paying a handshake each (uvicorn's default of
5 s equals the default heartbeat interval)."""

STOP_GRACE = 5
"""Seconds a stopping server gives calls under way (a followed log, an exec stream would hold it forever)."""


def peer_of(conn: HTTPConnection) -> str | None:
    """The common name of the verified client certificate, or None if the client showed none."""
    peer = conn.scope.get(PEER_KEY)
    return peer if isinstance(peer, str) else None


def peer_protocol(accept: Callable[[str | None], bool]) -> type[H11Protocol]:
    class PeerProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = peer_common_name(transport.get_extra_info("peercert"))
            if not accept(peer):
                transport.abort()
                return
            super().connection_made(transport)
            inner = self.app

            async def app(scope: Any, receive: Any, send: Any) -> None:
                scope[PEER_KEY] = peer
                await inner(scope, receive, send)

            self.app = app

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport is None:  # refused in connection_made: uvicorn never saw it
                return
            super().connection_lost(exc)

        def shutdown(self) -> None:
            # An idle keep-alive connection is closed with a TLS close_notify, and asyncio then waits
            # up to 30 s for the peer's answer, which a pooled client never reads: abort it instead.
            idle = self.cycle is None or self.cycle.response_complete
            super().shutdown()
            if idle:
                self.transport.abort()

    return PeerProtocol


def https_server(
    app: Any,
    identity: Identity,
    host: str,
    port: int,
    *,
    accept: Callable[[str | None], bool],
    require_client_cert: bool = True,
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        http=peer_protocol(accept),
        ws="websockets-sansio",
        ws_ping_interval=None,
        timeout_keep_alive=int(KEEP_ALIVE),
        timeout_graceful_shutdown=STOP_GRACE,
        ssl_keyfile=str(identity.key),
        ssl_certfile=str(identity.cert),
        ssl_ca_certs=str(identity.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL,
    )
    return QuietServer(config)  # signals are its process's (atoll/stopping.py)
