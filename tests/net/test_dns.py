"""The resolver against a real kernel: sockets at 127.0.0.11 inside instance namespaces, in a host
namespace per test (see conftest). Upstream servers are fakes inside namespaces the test made, so no
query leaves the machine."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import cast

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest

from atoll.agent.net import netns
from atoll.agent.net.dataplane import HostNetwork
from atoll.agent.net.dnsforward import UDP_TIMEOUT
from atoll.agent.net.dnsserver import MAX_PENDING, MAX_STREAMS, NameService
from atoll.model.dnsrecords import RESOLVER_ADDRESS, NameRecord, NetworkNames
from atoll.model.instance import InstanceSpec

from .helpers import Host, in_netns, instance, new_id, port

NET_A, NET_B = new_id(), new_id()
FAKE_ANSWER = "192.0.2.7"


async def ask(path: Path, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    """A query from inside the namespace at ``path`` to its resolver."""
    query = dns.message.make_query(name, rdtype)

    def send() -> dns.message.Message:
        if tcp:
            return dns.query.tcp(query, RESOLVER_ADDRESS, timeout=8)
        return dns.query.udp(query, RESOLVER_ADDRESS, timeout=8)

    return await asyncio.to_thread(netns.run_in, path, send)


def addresses(response: dns.message.Message) -> list[str]:
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


def records(network_id: str, cidr: str, *named: tuple[str, InstanceSpec]) -> NetworkNames:
    out = []
    for name, spec in named:
        ip = next(p.ip for p in spec.ports if p.network_id == network_id)
        out.append(NameRecord(name, ip, spec.id, primary=True))
    return NetworkNames(network_id, records=out, cidrs=[cidr])


class FakeUpstream:
    """A DNS server that answers every A query with FAKE_ANSWER and notes who asked what."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._closers: list[Callable[[], Awaitable[None] | None]] = []

    def _reply(self, data: bytes, source: str) -> bytes:
        query = dns.message.from_wire(data)
        self.seen.append((source, query.question[0].name.to_text()))
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", FAKE_ANSWER))
        return response.to_wire()

    async def start(self, where: Path | None, address: str) -> None:
        def bind() -> tuple[socket.socket, socket.socket]:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((address, 53))
            tcp.bind((address, 53))
            tcp.listen()
            udp.setblocking(False)
            tcp.setblocking(False)
            return udp, tcp

        udp, tcp = await asyncio.to_thread(netns.run_in, where, bind)
        upstream = self

        class Protocol(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                cast(asyncio.DatagramTransport, self.transport).sendto(upstream._reply(data, addr[0]), addr)

        async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            reply = self._reply(await reader.readexactly(size), writer.get_extra_info("peername")[0])
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
            writer.close()

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Protocol, sock=udp)
        server = await asyncio.start_server(stream, sock=tcp)
        self._closers += [transport.close, server.close]

    async def close(self) -> None:
        for close in self._closers:
            result = close()
            if result is not None:
                await result


def service(dataplane: HostNetwork, host: Host, tmp_path: Path, table: list[NetworkNames]) -> NameService:
    async def fetch() -> list[NetworkNames]:
        return list(table)

    resolv = tmp_path / "resolv.conf"
    if not resolv.exists():
        resolv.write_text("")  # no host resolvers unless a test gives some
    return NameService(fetch, dataplane.netns_path, host_netns=host.path, resolv_conf=resolv)


def test_instances_resolve_the_instances_they_share_a_network_with(
    dataplane: HostNetwork, host: Host, tmp_path: Path
) -> None:
    a = instance(port(NET_A, "10.0.0.2"))
    b = instance(port(NET_A, "10.0.0.3"), port(NET_B, "10.1.0.3", device="eth1"))
    c = instance(port(NET_B, "10.1.0.4"))
    table = [
        records(NET_A, "10.0.0.0/24", ("a", a), ("b", b)),
        records(NET_B, "10.1.0.0/24", ("b", b), ("c", c)),
    ]

    async def scenario() -> None:
        names = service(dataplane, host, tmp_path, table)
        try:
            for spec in (a, b, c):
                await dataplane.attach(spec)
                await names.serve(spec)
            await names.refresh()
            path = dataplane.netns_path
            assert addresses(await ask(path(a.id), "b")) == ["10.0.0.3"]
            assert addresses(await ask(path(c.id), "b")) == ["10.1.0.3"]  # the address on the shared network
            assert addresses(await ask(path(b.id), "c", tcp=True)) == ["10.1.0.4"]
            assert (await ask(path(a.id), "c")).rcode() == dns.rcode.NXDOMAIN  # no network in common
            assert addresses(await ask(path(a.id), "b", "AAAA")) == []
            ptr = await ask(path(c.id), "3.0.1.10.in-addr.arpa", "PTR")
            assert addresses(ptr) == ["b."]
            # busybox's own resolver, as an instance uses it.
            out = await asyncio.to_thread(in_netns, path(a.id), "busybox", "nslookup", "b", RESOLVER_ADDRESS)
            assert "10.0.0.3" in out.stdout, out

            table[0] = records(NET_A, "10.0.0.0/24", ("a", a))  # b left network A
            await names.refresh()
            assert (await ask(path(a.id), "b")).rcode() == dns.rcode.NXDOMAIN
            assert addresses(await ask(path(c.id), "b")) == ["10.1.0.3"]

            await names.stop(a.id)
            listening = await asyncio.to_thread(in_netns, path(a.id), "ss", "-lnu")
            assert f"{RESOLVER_ADDRESS}:53" not in listening.stdout
            await names.sync([a, b, c])  # a sync from a list read before the stop does not bring it back
            assert names.serving() == {b.id, c.id}
            await names.sync([b])
            assert names.serving() == {b.id}
            await names.sync([a, b, c])  # a stopped instance's tombstone goes once lists no longer name it
        finally:
            await names.close()
            for spec in (a, b, c):
                await dataplane.release(spec.id, spec.ports)

    asyncio.run(scenario())


def test_a_restarted_agent_serves_again(dataplane: HostNetwork, host: Host, tmp_path: Path) -> None:
    a = instance(port(NET_A, "10.0.0.2"))
    b = instance(port(NET_A, "10.0.0.3"))
    table = [records(NET_A, "10.0.0.0/24", ("a", a), ("b", b))]

    async def scenario() -> None:
        first = service(dataplane, host, tmp_path, table)
        for spec in (a, b):
            await dataplane.attach(spec)
            await first.serve(spec)
        await first.refresh()
        await first.close()  # the agent went away
        with pytest.raises(dns.exception.Timeout):
            await asyncio.to_thread(
                netns.run_in,
                dataplane.netns_path(a.id),
                lambda: dns.query.udp(dns.message.make_query("b", "A"), RESOLVER_ADDRESS, timeout=1),
            )
        second = service(dataplane, host, tmp_path, table)
        try:
            await second.sync([a, b])  # what its first reconcile does
            await second.refresh()
            assert addresses(await ask(dataplane.netns_path(a.id), "b")) == ["10.0.0.3"]
        finally:
            await second.close()
            for spec in (a, b):
                await dataplane.release(spec.id, spec.ports)

    asyncio.run(scenario())


def test_other_names_go_to_the_subnets_servers_from_inside_the_instance(
    dataplane: HostNetwork, host: Host, tmp_path: Path
) -> None:
    server = instance(port(NET_A, "10.0.0.53"))
    a = instance(replace(port(NET_A, "10.0.0.2"), dns=["10.0.0.53"]))
    silent = instance(replace(port(NET_A, "10.0.0.4"), dns=["10.0.0.99"]))  # nobody has .99
    table = [records(NET_A, "10.0.0.0/24", ("a", a))]

    async def scenario() -> None:
        names = service(dataplane, host, tmp_path, table)
        upstream = FakeUpstream()
        try:
            for spec in (server, a, silent):
                await dataplane.attach(spec)
            await upstream.start(dataplane.netns_path(server.id), "10.0.0.53")
            for spec in (a, silent):
                await names.serve(spec)
            await names.refresh()
            assert addresses(await ask(dataplane.netns_path(a.id), "example.test")) == [FAKE_ANSWER]
            assert addresses(await ask(dataplane.netns_path(a.id), "over.tcp.test", tcp=True)) == [
                FAKE_ANSWER
            ]
            # The queries came from the instance itself, on the tenant network.
            assert upstream.seen == [("10.0.0.2", "example.test."), ("10.0.0.2", "over.tcp.test.")]
            assert (await ask(dataplane.netns_path(a.id), "nosuchname")).rcode() == dns.rcode.NXDOMAIN
            assert len(upstream.seen) == 2  # single labels are never forwarded
            response = await ask(dataplane.netns_path(silent.id), "example.test")
            assert response.rcode() == dns.rcode.SERVFAIL
        finally:
            await upstream.close()
            await names.close()
            for spec in (server, a, silent):
                await dataplane.release(spec.id, spec.ports)

    asyncio.run(scenario())


def test_without_subnet_servers_the_hosts_resolvers_are_asked_from_the_host(
    dataplane: HostNetwork, host: Host, tmp_path: Path
) -> None:
    host.run("ip", "link", "set", "lo", "up")
    (tmp_path / "resolv.conf").write_text("search example.org\nnameserver 127.0.0.1\n")
    a = instance(port(NET_A, "10.0.0.2"))

    async def scenario() -> None:
        names = service(dataplane, host, tmp_path, [])
        upstream = FakeUpstream()
        try:
            await dataplane.attach(a)
            await upstream.start(host.path, "127.0.0.1")
            await names.serve(a)
            await names.refresh()
            assert addresses(await ask(dataplane.netns_path(a.id), "example.test")) == [FAKE_ANSWER]
            assert upstream.seen == [("127.0.0.1", "example.test.")]
        finally:
            await upstream.close()
            await names.close()
            await dataplane.release(a.id, a.ports)

    asyncio.run(scenario())


def test_no_loops_and_bounded_connections(dataplane: HostNetwork, host: Host, tmp_path: Path) -> None:
    a = instance(replace(port(NET_A, "10.0.0.2"), dns=[RESOLVER_ADDRESS]))  # "forward to yourself"

    async def scenario() -> None:
        names = service(dataplane, host, tmp_path, [])
        try:
            await dataplane.attach(a)
            await names.serve(a)
            await names.refresh()
            path = dataplane.netns_path(a.id)
            # Nothing to forward to (the resolver itself is no upstream): SERVFAIL at once, no loop.
            assert (await ask(path, "example.test")).rcode() == dns.rcode.SERVFAIL

            def connect_many() -> list[bytes]:
                socks = [
                    socket.create_connection((RESOLVER_ADDRESS, 53), timeout=5)
                    for _ in range(MAX_STREAMS + 1)
                ]
                try:
                    socks[-1].settimeout(5)
                    return [socks[-1].recv(10)]  # b"": closed by the resolver, the others stay open
                finally:
                    for sock in socks:
                        sock.close()

            assert await asyncio.to_thread(netns.run_in, path, connect_many) == [b""]
        finally:
            await names.close()
            await dataplane.release(a.id, a.ports)

    asyncio.run(scenario())


def test_forwarded_queries_in_flight_are_bounded(dataplane: HostNetwork, host: Host, tmp_path: Path) -> None:
    a = instance(replace(port(NET_A, "10.0.0.2"), dns=["10.0.0.99"]))  # nobody answers there

    async def scenario() -> None:
        names = service(dataplane, host, tmp_path, [])
        try:
            await dataplane.attach(a)
            await names.serve(a)

            def flood() -> int:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.connect((RESOLVER_ADDRESS, 53))
                for i in range(MAX_PENDING + 16):
                    sock.send(dns.message.make_query(f"name{i}.test", "A").to_wire())
                replies = 0
                sock.settimeout(UDP_TIMEOUT + 2)
                try:
                    while True:
                        sock.recv(4096)
                        replies += 1
                except TimeoutError:
                    return replies
                finally:
                    sock.close()

            # Each forward waits for the silent upstream; those beyond the limit are dropped unanswered.
            assert await asyncio.to_thread(netns.run_in, dataplane.netns_path(a.id), flood) == MAX_PENDING
        finally:
            await names.close()
            await dataplane.release(a.id, a.ports)

    asyncio.run(scenario())
