"""A TCP proxy in front of a registry that records requests and can cut connections mid-transfer.

It relays bytes both ways on the test's event loop. ``cut_after`` bytes into a server-to-client stream
(past every small answer, inside a blob) it closes both sides, ``cuts`` times: an interrupted download.
``pace`` slows the server-to-client direction down, so transfers overlap as on a real link.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

_RANGE = re.compile(rb"\r\nrange: [^\r\n]*", re.I)
_REQUEST = re.compile(rb"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/1\.[01]\r\n(.*?)\r\n\r\n", re.S)


class Proxy:
    def __init__(
        self,
        target_port: int,
        *,
        cut_after: int = 0,
        cuts: int = 0,
        pace: float = 0.0,
        no_ranges: bool = False,
    ) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.cuts = cuts
        self.pace = pace
        """Seconds to wait before relaying each piece (up to 64 KiB) from the server: a slow link."""
        self.no_ranges = no_ranges
        """Drop ``Range`` headers from requests: a registry that always answers 200 with the whole blob."""
        self.requests: list[tuple[str, str, str]] = []
        """(method, path, headers) of every request seen."""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_gets(self, digest: str = "") -> list[tuple[str, str, str]]:
        return [r for r in self.requests if r[0] == "GET" and "/blobs/" in r[1] and digest in r[1]]

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        up = asyncio.ensure_future(self._upstream(client_r, server_w))
        down = asyncio.ensure_future(self._downstream(server_r, client_w))
        for task in (up, down):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for writer in (client_w, server_w):
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        while data := await reader.read(65536):
            pending += data
            while m := _REQUEST.search(pending):
                self.requests.append((m.group(1).decode(), m.group(2).decode(), m.group(3).decode()))
                pending = pending[m.end() :]
            pending = pending[-65536:]
            if self.no_ranges:
                data = _RANGE.sub(b"", data)
            writer.write(data)
            await writer.drain()

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = 0
        while data := await reader.read(65536):
            if self.cuts > 0 and self.cut_after and sent + len(data) > self.cut_after:
                writer.write(data[: max(self.cut_after - sent, 0)])
                await writer.drain()
                self.cuts -= 1
                return
            sent += len(data)
            if self.pace:
                await asyncio.sleep(self.pace)
            writer.write(data)
            await writer.drain()
