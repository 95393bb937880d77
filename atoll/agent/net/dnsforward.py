"""Forwarding a query to the upstream servers, from the namespace each upstream belongs to.

A subnet's own DNS servers (``dns_nameservers``) are tenant addresses: the query leaves from inside the
instance's namespace, with the instance's address, exactly as if the instance had asked them itself
(its routes and, later, its security groups apply). The host's resolvers (from /etc/resolv.conf) are
asked from the host's namespace, as Docker does, which also makes a loopback resolver such as
systemd-resolved usable.

Each query gets a fresh socket (a random source port, the kernel's ICMP errors reported on it); the
raw reply is relayed unchanged once its id matches the query's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from atoll.agent.net import netns

UDP_TIMEOUT = 2.0
TCP_TIMEOUT = 4.0
MAX_MESSAGE = 65535


@dataclass(frozen=True)
class Upstream:
    address: str
    port: int = 53
    netns: Path | None = None
    """The namespace the query is sent from; None is the agent's own."""

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ip_address(self.address).version == 6 else socket.AF_INET


def host_upstreams(resolv_conf: Path, host_netns: Path | None) -> list[Upstream]:
    """The ``nameserver`` lines of the host's resolv.conf."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                ip_address(parts[1].split("%")[0])
                out.append(Upstream(parts[1].split("%")[0], netns=host_netns))
    return out


async def _socket(upstream: Upstream, kind: socket.SocketKind) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(upstream.family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        return sock

    if upstream.netns is None:
        return make()
    return await asyncio.to_thread(netns.run_in, upstream.netns, make)


async def _udp(query: bytes, upstream: Upstream, timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock = await _socket(upstream, socket.SOCK_DGRAM)
    try:
        await loop.sock_connect(sock, (upstream.address, upstream.port))
        await loop.sock_sendall(sock, query)
        async with asyncio.timeout(timeout):
            while True:
                reply = await loop.sock_recv(sock, MAX_MESSAGE)
                if len(reply) >= 12 and reply[:2] == query[:2]:
                    return reply
    except (OSError, TimeoutError):
        return None
    finally:
        sock.close()


async def _tcp(query: bytes, upstream: Upstream, timeout: float) -> bytes | None:
    sock = await _socket(upstream, socket.SOCK_STREAM)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (upstream.address, upstream.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(struct.pack("!H", len(query)) + query)
            await writer.drain()
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            reply = await reader.readexactly(size)
            return reply if len(reply) >= 12 and reply[:2] == query[:2] else None
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return None
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()


async def forward(query: bytes, upstreams: Sequence[Upstream], *, tcp: bool = False) -> bytes | None:
    """The first reply any upstream gives, asking them in order; None if none replied in time."""
    for upstream in upstreams:
        if tcp:
            reply = await _tcp(query, upstream, TCP_TIMEOUT)
        else:
            reply = await _udp(query, upstream, UDP_TIMEOUT)
        if reply is not None:
            return reply
    return None
