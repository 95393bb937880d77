"""The listener's HTTP core in-process, with handlers of the test's own: keep-alive, chunked streams,
hijack with trailing data, a handler cancelled when its client hangs up, oversized bodies, errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from atoll.api.docker.app import map_error
from atoll.api.docker.http import Empty, Hijack, Json, RawStream, Request, Stream
from atoll.api.docker.router import Route, Router
from atoll.api.docker.server import DockerServer
from atoll.model.errors import NotFound


class Handlers:
    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def echo(self, req: Request) -> Json:
        return Json({"path": req.path, "version": req.api_version, "body": req.body.decode(), "q": req.query})

    async def stream(self, req: Request) -> Stream:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"{i}\n".encode()

        return Stream(chunks(), content_type="text/plain")

    async def hijack(self, req: Request) -> Hijack:
        async def run(raw: RawStream) -> None:
            while data := await raw.read():
                await raw.write(data.upper())

        return Hijack(run)

    async def block(self, req: Request) -> Empty:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return Empty()

    async def missing(self, req: Request) -> Empty:
        raise NotFound("no such thing")


async def _with_server(path: Path, test: Callable[[Handlers], Awaitable[None]]) -> None:
    h = Handlers()
    routes = [
        Route("POST", "/echo", h.echo),
        Route("GET", "/stream", h.stream),
        Route("POST", "/hijack", h.hijack),
        Route("GET", "/block", h.block),
        Route("GET", "/missing", h.missing),
    ]
    server = DockerServer(Router(routes), map_error, max_body=1000)
    await server.listen(f"unix://{path}")
    try:
        await test(h)
    finally:
        await server.close()


async def _exchange(path: Path, data: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(data)
    out = b""
    while until not in out:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        if not chunk:
            break
        out += chunk
    writer.close()
    return out


def test_keep_alive_chunked_streams_and_errors(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def body(_: Handlers) -> None:
        out = await _exchange(
            sock,
            b"POST /v1.41/echo?a=1 HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /stream HTTP/1.1\r\nHost: d\r\n\r\n"
            b"GET /missing HTTP/1.1\r\nHost: d\r\n\r\n",
            b"no such thing",
        )
        assert b'"path": "/echo"' in out and b'"version": "1.41"' in out and b'"body": "hello"' in out
        assert b"Transfer-Encoding: chunked" in out and b"0\n" in out and b"2\n" in out
        assert b"HTTP/1.1 404 Not Found" in out and b'{"message": "no such thing"}' in out
        big = await _exchange(
            sock, b"POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, b"}"
        )
        assert b"HTTP/1.1 413" in big

    asyncio.run(_with_server(sock, body))


def test_hijack_hands_over_trailing_data_and_the_socket(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def body(_: Handlers) -> None:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(
            b"POST /hijack HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            b"Content-Length: 0\r\n\r\nsent early"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101 UPGRADED") and b"Upgrade: tcp" in head
        assert await asyncio.wait_for(reader.readexactly(10), 10) == b"SENT EARLY"
        writer.write(b"later")
        assert await asyncio.wait_for(reader.readexactly(5), 10) == b"LATER"
        writer.close()
        # A client that does not ask to upgrade gets the raw stream after a 200, as from dockerd.
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"POST /hijack HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\nplain")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert await asyncio.wait_for(reader.readexactly(5), 10) == b"PLAIN"
        writer.close()

    asyncio.run(_with_server(sock, body))


def test_a_handler_is_cancelled_when_its_client_hangs_up(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def body(h: Handlers) -> None:
        _, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"GET /block HTTP/1.1\r\nHost: d\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        await asyncio.wait_for(h.cancelled.wait(), 10)

    asyncio.run(_with_server(sock, body))
