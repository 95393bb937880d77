"""Closing the Docker API listener at a stop: no new connections, idle ones end, a request under way
gets its answer within the grace (and its connection then closes), one longer than the grace is ended."""

from __future__ import annotations

import asyncio
from pathlib import Path

from atoll.api.docker.app import map_error
from atoll.api.docker.http import Json, Request
from atoll.api.docker.router import Route, Router
from atoll.api.docker.server import DockerServer


async def slow(req: Request) -> Json:
    await asyncio.sleep(float(req.query.get("s", ["0.5"])[0]))
    return Json({"done": True})


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 10)  # to the end: the server closes the connection


def test_close_answers_requests_under_way_within_the_grace(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"

    async def main() -> None:
        server = DockerServer(Router([Route("GET", "/slow", slow)]), map_error)
        await server.listen(f"unix://{sock}")
        idle_reader, _idle = await asyncio.open_unix_connection(str(sock))
        busy_reader, busy = await asyncio.open_unix_connection(str(sock))
        busy.write(b"GET /slow?s=0.5 HTTP/1.1\r\nHost: d\r\n\r\n")
        long_reader, long = await asyncio.open_unix_connection(str(sock))
        long.write(b"GET /slow?s=60 HTTP/1.1\r\nHost: d\r\n\r\n")
        await asyncio.sleep(0.2)  # both requests under way

        closing = asyncio.create_task(server.close(grace=2))
        assert await read_all(idle_reader) == b""  # idle: closed at once, with no answer
        answer = await read_all(busy_reader)
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.rstrip().endswith(b'{"done": true}')
        assert await read_all(long_reader) == b""  # past the grace: ended
        await asyncio.wait_for(closing, 10)
        try:
            await asyncio.open_unix_connection(str(sock))
        except (ConnectionRefusedError, FileNotFoundError):
            pass
        else:
            raise AssertionError("the closed listener still accepts connections")

    asyncio.run(main())
