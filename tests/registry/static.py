"""A fake registry answering fixed responses by path: for what a real registry won't serve (oversized
or schema-1 manifests) and for counting retries. Answers can be lists, served in turn."""

from __future__ import annotations

import asyncio
import contextlib

Answer = tuple[int, dict[str, str], bytes]


class StaticRegistry:
    def __init__(self, routes: dict[str, Answer | list[Answer]]) -> None:
        self.routes = routes
        self.hits: dict[str, int] = {}
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> StaticRegistry:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                method, path, _ = line.decode().split(" ", 2)
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                path = path.split("?")[0]
                n = self.hits.get(path, 0)
                self.hits[path] = n + 1
                answer = self.routes.get(path, (404, {}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}'))
                status, headers, body = (
                    answer[min(n, len(answer) - 1)] if isinstance(answer, list) else answer
                )
                head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(head.encode() + b"\r\n" + (b"" if method == "HEAD" else body))
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
