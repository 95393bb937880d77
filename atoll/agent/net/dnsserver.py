"""The resolver of a host's instances: Docker's embedded DNS, inside the agent.

Design:
- Every instance with ports gets a UDP and a TCP socket bound to 127.0.0.11:53 *inside its own network
  namespace*. The sockets are made by a thread that joined the namespace (see ``netns.run_in``) and
  then served by the agent's event loop: a socket keeps the namespace it was made in. The instance's
  resolv.conf says ``nameserver 127.0.0.11``. No process, address or route is added to the instance or
  to the tenant network, and the socket tells which instance asks, so each gets its own view.
- The view of an instance is the union of the ``NetworkNames`` of its networks, which come from the
  controller (``ControlPlane.network_names``): with several hosts, peers elsewhere resolve too. They are
  fetched at every reconcile and at once when the controller says names changed (``refresh``).
- What is not answered here (see ``dnsanswer``) is forwarded: to the subnet's DNS servers from inside
  the instance's namespace, else to the host's resolvers from the host's namespace (``dnsforward``).
- While the agent is down the sockets are gone: lookups fail at once (the kernel answers "port
  unreachable"); addresses and open connections are unaffected, and the next agent binds again in its
  first reconcile. A helper process per namespace would keep answering, but would be a per-instance
  process outliving its agent, which the design rules out.
- A socket holds its namespace alive, so an instance's sockets are closed before its namespace is
  released, and ``sync`` closes those of instances no longer assigned here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.exception
import dns.message

from atoll.agent.net import netns
from atoll.agent.net.dnsanswer import (
    NameView,
    NetworkIndex,
    answer,
    index_network,
    servfail,
    to_wire,
    udp_limit,
)
from atoll.agent.net.dnsforward import Upstream, forward, host_upstreams
from atoll.model.dnsrecords import RESOLVER_ADDRESS, NetworkNames
from atoll.model.instance import InstanceSpec

log = logging.getLogger(__name__)

HOST_RESOLV = Path("/etc/resolv.conf")
DNS_PORT = 53
IP_FREEBIND = 15
"""Bind even before the namespace's loopback is up (linux/in.h)."""
MAX_PENDING = 64
"""Forwarded queries one instance may have in flight; more are dropped (the client retries), so one
tenant cannot pile up work in the agent."""
TCP_IDLE = 10.0
MAX_STREAMS = 16
"""TCP connections one instance may hold open; more are closed at once."""
CACHE_SIZE = 512

Fetch = Callable[[], Awaitable[list[NetworkNames]]]


def _bind(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on ``address:port`` in the calling thread's namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        for sock in (udp, tcp):
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.setblocking(False)
        tcp.listen(64)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


@dataclass
class _Listener:
    """The resolver of one instance."""

    instance_id: str
    network_ids: tuple[str, ...]
    upstreams: tuple[Upstream, ...]
    _view: NameView = field(default_factory=NameView)
    cache: dict[tuple[bytes, bool], bytes] = field(default_factory=dict)
    """Local answers by query (all but its id) and transport: a reply depends on nothing else while
    the view stays, and building one with dnspython costs ~7 times the round trip itself."""
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None
    pending: int = 0
    streams: int = 0
    """Open TCP connections."""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def view(self) -> NameView:
        return self._view

    @view.setter
    def view(self, view: NameView) -> None:
        self._view = view
        self.cache.clear()

    def answer_here(self, data: bytes, *, tcp: bool) -> tuple[bytes | None, dns.message.Message | None]:
        """``(reply, None)`` when answered here, ``(None, query)`` when it is to be forwarded, and
        ``(None, None)`` for bytes that are not a query at all (dropped: there is no id to answer)."""
        key = (data[2:], tcp)
        cached = self.cache.get(key)
        if cached is not None and len(data) >= 2:
            return data[:2] + cached, None
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None, None
        response = answer(query, self.view)
        if response is None:
            return None, query
        reply = to_wire(response, 65535 if tcp else udp_limit(query))
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()
        self.cache[key] = reply[2:]
        return reply, None

    async def forward(self, data: bytes, query: dns.message.Message, *, tcp: bool) -> bytes:
        reply = await forward(data, self.upstreams, tcp=tcp) if self.upstreams else None
        if reply is not None:
            return reply
        return to_wire(servfail(query), 65535 if tcp else udp_limit(query))

    async def handle(self, data: bytes, *, tcp: bool) -> bytes | None:
        reply, query = self.answer_here(data, tcp=tcp)
        if query is not None:
            return await self.forward(data, query, tcp=tcp)
        return reply

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.pending >= MAX_PENDING:
            coro.close()  # dropped: the client asks again
            return
        self.pending += 1

        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("the resolver of %s failed on a query", self.instance_id[:12])
            finally:
                self.pending -= 1

        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tcp.wait_closed(), 1)
        for task in list(self.tasks):
            task.cancel()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, listener: _Listener) -> None:
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # selector transports do not subclass it

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Local names are answered right here; only forwarding, which waits on the network, gets a task.
        reply, query = self.listener.answer_here(data, tcp=False)
        if reply is not None:
            self._send(reply, addr)
        elif query is not None:
            self.listener.spawn(self._forwarded(data, query, addr))

    async def _forwarded(self, data: bytes, query: dns.message.Message, addr: tuple[str, int]) -> None:
        self._send(await self.listener.forward(data, query, tcp=False), addr)

    def _send(self, reply: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


async def _serve_stream(
    listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Length-prefixed messages, one after another, until the client closes or idles."""
    if listener.streams >= MAX_STREAMS:
        writer.close()
        return
    listener.streams += 1
    try:
        while True:
            async with asyncio.timeout(TCP_IDLE):
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(size)
            reply = await listener.handle(data, tcp=True)
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        listener.streams -= 1
        writer.close()


class NameService:
    def __init__(
        self,
        fetch: Fetch,
        netns_path: Callable[[str], Path],
        *,
        host_netns: Path | None = None,
        resolv_conf: Path = HOST_RESOLV,
        port: int = DNS_PORT,
    ) -> None:
        self._fetch = fetch
        self._netns_path = netns_path
        self._host_netns = host_netns
        self._resolv_conf = resolv_conf
        self._port = port
        self._networks: dict[str, NetworkNames] = {}
        self._indexes: dict[str, NetworkIndex] = {}
        self._listeners: dict[str, _Listener] = {}
        self._released: set[str] = set()
        self._fresh: set[str] = set()
        """Served since the last sync began: a sync's list of assignments may predate them."""
        self._lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self._asked = 0
        self._fetched = 0

    def serving(self) -> set[str]:
        return set(self._listeners)

    def view(self, instance_id: str) -> NameView:
        listener = self._listeners.get(instance_id)
        return listener.view if listener is not None else NameView()

    # -- names -------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Fetch the names again. Calls that overlap share one fetch, but each returns only after a fetch
        that began after it was called, so its caller's change is in."""
        self._asked += 1
        wanted = self._asked
        async with self._refresh_lock:
            if self._fetched >= wanted:
                return
            upto = self._asked
            networks = {n.network_id: n for n in await self._fetch()}
            if networks != self._networks:  # index only what changed: a host may hold thousands of names
                self._indexes = {
                    network_id: self._indexes[network_id]
                    if self._networks.get(network_id) == names and network_id in self._indexes
                    else index_network(names)
                    for network_id, names in networks.items()
                }
                self._networks = networks
                for listener in self._listeners.values():
                    self._update_view(listener)
            self._fetched = upto

    def _update_view(self, listener: _Listener) -> None:
        listener.view = NameView(tuple(self._indexes[n] for n in listener.network_ids if n in self._indexes))

    def _upstreams(self, spec: InstanceSpec) -> tuple[Upstream, ...]:
        """The subnet's servers, from inside the instance, if its networks name any; else the host's."""
        own = next((p.dns for p in spec.ports if p.dns), [])
        if own:
            path = self._netns_path(spec.id)
            # Inside the instance, 127.0.0.11 is this very resolver: asking it would be a loop.
            return tuple(Upstream(address, netns=path) for address in own if address != RESOLVER_ADDRESS)
        return tuple(host_upstreams(self._resolv_conf, self._host_netns))

    # -- listeners ---------------------------------------------------------------------------------

    async def serve(self, spec: InstanceSpec) -> None:
        """Listen in the instance's namespace (made by the dataplane already). Idempotent."""
        if not spec.ports:
            return
        async with self._lock:
            self._released.discard(spec.id)
            self._fresh.add(spec.id)
            await self._open(spec)

    async def _open(self, spec: InstanceSpec) -> None:
        listener = self._listeners.get(spec.id)
        networks = tuple(p.network_id for p in spec.ports)
        if listener is not None:
            listener.network_ids, listener.upstreams = networks, self._upstreams(spec)
            self._update_view(listener)
            return
        listener = _Listener(spec.id, networks, self._upstreams(spec))
        self._update_view(listener)
        path = self._netns_path(spec.id)
        udp, tcp = await asyncio.to_thread(netns.run_in, path, lambda: _bind(RESOLVER_ADDRESS, self._port))
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(listener), sock=udp)
            listener.udp = transport
            listener.tcp = await asyncio.start_server(lambda r, w: _serve_stream(listener, r, w), sock=tcp)
        except BaseException:
            await listener.close()
            udp.close()
            tcp.close()
            raise
        self._listeners[spec.id] = listener

    async def stop(self, instance_id: str) -> None:
        """Close an instance's sockets (before its namespace goes). Idempotent."""
        async with self._lock:
            self._released.add(instance_id)
            listener = self._listeners.pop(instance_id, None)
            if listener is not None:
                await listener.close()

    async def sync(self, specs: Iterable[InstanceSpec]) -> None:
        """Serve every instance of ``specs`` that has ports and a namespace; close the others' sockets."""
        given = {s.id: s for s in specs if s.ports}
        async with self._lock:
            self._released &= set(given)
            for instance_id in self._released:
                given.pop(instance_id, None)
            fresh, self._fresh = self._fresh, set()
            for instance_id in set(self._listeners) - set(given) - fresh:
                await self._listeners.pop(instance_id).close()
            for spec in given.values():
                if spec.id not in self._listeners and not netns.is_netns(self._netns_path(spec.id)):
                    continue  # the dataplane could not make it; it retries, and so do we
                try:
                    await self._open(spec)
                except Exception:
                    log.exception("could not serve names to instance %s", spec.id[:12])

    async def close(self) -> None:
        async with self._lock:
            for listener in self._listeners.values():
                await listener.close()
            self._listeners.clear()
