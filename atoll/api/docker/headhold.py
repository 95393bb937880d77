"""Holding a hijacked stream's first bytes until docker-py has read the ``101`` on its own.

docker-py reads the ``101 UPGRADED`` through http.client's buffered reader (one ``recv`` of up to 8 KiB)
and then reads the raw socket. Stream bytes that are already in the socket when that ``recv`` runs are
taken into the buffer with the headers and lost to it: the first frame of an exec or attach vanishes
and the test waits forever. dockerd rarely shows this only because it is slow: its exec or attach
output starts tens of milliseconds after the ``101``. Atoll's comes within a millisecond, so the race
is real, and sending the ``101`` and the output as separate writes does not help (the client's one
``recv`` takes whatever the kernel holds by then).

So for these clients the first stream bytes wait until the client has read the ``101``:

- On a unix socket (docker-py's default) the kernel says when: ``SIOCOUTQ`` counts the buffers the
  peer has not read to the end yet, 0 once it has read everything, so the wait ends the moment the
  headers are taken, typically well under a
  millisecond, polled every ``POLL`` seconds, never more than ``LIMIT``.
- Over TCP (and TLS over it) ``SIOCOUTQ`` counts only unacknowledged bytes, which loopback
  acknowledges on arrival, not on reading: nothing tells, so the first bytes wait ``LIMIT``.

Other clients (the Docker CLI, Compose's Go code) read the socket unbuffered and get no hold.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import socket
import termios
from collections.abc import Awaitable, Callable

from atoll.api.docker.streams import ByteWriter

BUFFERED_CLIENTS = ("docker-sdk-python/",)
LIMIT = 0.1
POLL = 0.0005

Hold = Callable[[], Awaitable[None]]


def unread_bytes(sock: socket.socket) -> int:
    """How much the peer of a unix stream socket has not read yet, in the kernel's buffer sizes; 0 once it
    has read everything (``SIOCOUTQ``, the same number as ``TIOCOUTQ``)."""
    out = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, out, True)
    return out[0]


def _unix_socket(writer: ByteWriter) -> socket.socket | None:
    get = getattr(writer, "get_extra_info", None)
    sock = get("socket") if get is not None else None
    if sock is None or getattr(sock, "family", None) != socket.AF_UNIX:
        return None
    return sock  # type: ignore[no-any-return]


def hold_for(user_agent: str, writer: ByteWriter) -> Hold | None:
    """What the first write of a hijacked stream waits for, or None."""
    if not user_agent.startswith(BUFFERED_CLIENTS):
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT
    sock = _unix_socket(writer)

    async def until_read() -> None:
        assert sock is not None
        while loop.time() < deadline:
            try:
                if unread_bytes(sock) == 0:
                    return
            except OSError:
                return  # closed meanwhile: the write reports it
            await asyncio.sleep(POLL)

    async def until_deadline() -> None:
        delay = deadline - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    return until_read if sock is not None else until_deadline
