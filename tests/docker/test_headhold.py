"""headhold: the kernel's count of what a unix socket's peer has not read, and who gets a hold."""

from __future__ import annotations

import asyncio
import socket

from atoll.api.docker.headhold import LIMIT, hold_for, unread_bytes


def test_unread_bytes_counts_until_the_peer_reads() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert unread_bytes(a) == 0
        a.sendall(b"HTTP/1.1 101 UPGRADED\r\n\r\n")
        assert unread_bytes(a) > 0  # counted in the kernel's buffer sizes, not bytes
        b.recv(10)
        assert unread_bytes(a) > 0
        b.recv(100)
        assert unread_bytes(a) == 0


def test_docker_py_on_a_unix_socket_waits_only_until_the_headers_are_read() -> None:
    async def run() -> tuple[float, float, bool]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _reader, writer = await asyncio.open_unix_connection(sock=a)
        try:
            assert hold_for("Go-http-client/1.1", writer) is None  # the CLI reads unbuffered
            writer.write(b"HTTP/1.1 101 UPGRADED\r\n\r\n")
            await writer.drain()
            hold = hold_for("docker-sdk-python/7.1.0", writer)
            assert hold is not None
            loop = asyncio.get_running_loop()
            start = loop.time()
            loop.call_later(0.02, b.recv, 100)  # the client takes the headers after 20 ms
            await hold()
            waited = loop.time() - start
            start = loop.time()
            again = hold_for("docker-sdk-python/7.1.0", writer)
            assert again is not None
            await again()  # nothing unread: no wait at all
            return waited, loop.time() - start, True
        finally:
            writer.close()
            b.close()

    waited, second, _ = asyncio.run(run())
    assert 0.015 < waited < LIMIT
    assert second < 0.01
