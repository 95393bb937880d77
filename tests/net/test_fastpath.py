"""The tenant fast path (eBPF, ``atoll.agent.net.fastpath``) on a real kernel: two test "hosts" joined
by a veth underlay, security groups enforced as a controller would, TCP between instances. Asserts what
the fast path must keep: data intact, the rules still deciding every new flow, anti-spoofing, a clean
close in conntrack, and flows that survive a new agent taking over."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2 import Conntrack

from atoll.agent.net import fastpath, netns
from atoll.agent.net.bpfbuild import build
from atoll.agent.net.fastpath import DEFAULT_CLOSING_S, UNDERLAY_PRIORITY, FastPath
from atoll.agent.net.overlay import vxlan_name
from atoll.model.instance import InstanceSpec
from atoll.model.network import PortSpec
from atoll.model.overlay import OverlayNetwork, RemotePort
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, Protocol, RuleSpec

from .helpers import Host, in_netns, instance, new_id, ping, port
from .nodes import Node, start
from .underlay import UNDERLAY, underlay_hosts

MTU = 1450
SERVICE = 5001
CLOSED = 5002
"""A port the group does not open."""
DATA = 4 << 20


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    with underlay_hosts() as pair:
        yield pair
        for host, address in zip(pair, UNDERLAY, strict=True):
            start(host, address, tmp_path / host.name).clear()


def overlay_port(network_id: str, ip: str) -> PortSpec:
    p = port(network_id, ip)
    return PortSpec(id=p.id, network_id=p.network_id, mac=p.mac, ip=p.ip, prefix_len=p.prefix_len, mtu=MTU)


def policy(*specs: InstanceSpec, group: str) -> HostSecurity:
    """One group: all egress; ingress ICMP, and TCP to ``SERVICE`` only (not ``CLOSED``)."""
    rules = [
        RuleSpec(Direction.EGRESS),
        RuleSpec(Direction.INGRESS, Protocol.ICMP),
        RuleSpec(Direction.INGRESS, Protocol.TCP, SERVICE, SERVICE),
    ]
    ports = [p for s in specs for p in s.ports]
    return HostSecurity(
        ports=[PortSecurity(p.id, p.network_id, p.ip, p.mac, [group]) for p in ports],
        groups=[GroupPolicy(group, rules, [p.ip for p in ports])],
    )


@dataclass
class Pair:
    """One network across the two hosts: instance ``x`` on ``a``, ``y`` on ``b``, in one group."""

    a: Node
    b: Node
    x: InstanceSpec
    y: InstanceSpec
    network: OverlayNetwork
    group: str

    def converge(self, a: Node | None = None, b: Node | None = None) -> None:
        a, b = a or self.a, b or self.b
        for node, spec, other, peer in ((a, self.x, self.y, b), (b, self.y, self.x, a)):
            (p,) = other.ports
            remote = RemotePort(p.id, p.mac, p.ip, peer.host.name, peer.underlay)
            asyncio.run(node.net.attach(spec, security=policy(self.x, self.y, group=self.group)))
            asyncio.run(node.net.set_overlaid({self.network.network_id}))
            network = OverlayNetwork(
                self.network.network_id, self.network.vni, MTU, [peer.underlay], [remote]
            )
            asyncio.run(node.overlay.converge([network]))

    @property
    def px(self) -> Path:
        return self.a.net.netns_path(self.x.id)

    @property
    def py(self) -> Path:
        return self.b.net.netns_path(self.y.id)


def make_pair(hosts: tuple[Host, Host], tmp_path: Path, *, fast_path: bool = True) -> Pair:
    a, b = (start(h, u, tmp_path / h.name, fast_path=fast_path) for h, u in zip(hosts, UNDERLAY, strict=True))
    network_id = new_id()
    pair = Pair(
        a,
        b,
        instance(overlay_port(network_id, "10.0.0.2")),
        instance(overlay_port(network_id, "10.0.0.3")),
        OverlayNetwork(network_id, 5000 + secrets.randbelow(100000), MTU, [], []),
        new_id(),
    )
    pair.converge()
    assert ping(pair.px, "10.0.0.3")
    return pair


class Stream:
    """A TCP connection from a client namespace to a server namespace (sockets made inside them)."""

    def __init__(self, client: Path, server: Path, address: str, port: int = SERVICE) -> None:
        self.listener = netns.run_in(server, lambda: socket.create_server((address, port)))
        self.listener.settimeout(5)
        self.client = netns.run_in(client, lambda: socket.create_connection((address, port), timeout=5))
        self.server, _ = self.listener.accept()
        self.server.settimeout(5)

    def send(self, size: int = DATA, *, reverse: bool = False) -> bool:
        """``size`` random bytes one way; True if they all arrived intact."""
        sender, receiver = (self.server, self.client) if reverse else (self.client, self.server)
        data = secrets.token_bytes(size)
        writer = threading.Thread(target=sender.sendall, args=(data,))
        writer.start()
        got = bytearray()
        try:
            while len(got) < size:
                chunk = receiver.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
        except TimeoutError:
            return False
        finally:
            writer.join(timeout=10)
        return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

    def close(self) -> None:
        for s in (self.client, self.server, self.listener):
            s.close()


def conntrack_timeouts(host: Host, port: int) -> list[int]:
    """The remaining timeouts (s) of the host's conntrack entries of TCP flows to ``port``."""

    def dump() -> list[int]:
        with Conntrack() as ct:
            return [
                entry.timeout
                for entry in ct.dump_entries()
                if entry.tuple_orig.proto == socket.IPPROTO_TCP and entry.tuple_orig.dport == port
            ]

    return netns.run_in(host.path, dump)


def test_the_program_builds_and_loads() -> None:
    """Not skipped where clang or the kernel's conntrack kfuncs are missing: CI must have them."""
    assert build().stat().st_size > 0
    assert FastPath(zone_of=lambda _network: 1).off_reason is None
    assert fastpath._kernel_too_old() is None, "CI's kernel must look flows up by conntrack zone"
    assert fastpath._kernel_too_old("6.1.0-13-amd64") and not fastpath._kernel_too_old("6.5.0")


def test_established_flows_skip_the_bridges_across_hosts(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    pair = make_pair(hosts, tmp_path)
    assert pair.a.net.fast.active and pair.b.net.fast.active, pair.a.net.fast.off_reason
    stream = Stream(pair.px, pair.py, "10.0.0.3")
    before = vxlan_packets(pair)
    try:
        assert stream.send() and stream.send(reverse=True)
    finally:
        stream.close()
    # 2 x 4 MiB is at least 128 packets of 64 KiB: the VXLAN devices carried none of them (tunnelled
    # and untunnelled by the program), only the handshake and the close.
    after = vxlan_packets(pair)
    assert all(after[i] - before[i] < 20 for i in range(4)), (before, after)
    # Data and ACKs, both ways, on both hosts: decapsulated as they arrive by the underlay.
    assert pair.a.net.fast.forwarded() > 100 and pair.b.net.fast.forwarded() > 100
    for host in hosts:
        assert "from_underlay" in underlay_filters(host)
    assert ping(pair.px, "10.0.0.3")  # not TCP: the bridge path, as before
    # With no overlay left, the filter leaves the host's device (the clsact qdisc stays).
    for node in (pair.a, pair.b):
        asyncio.run(node.overlay.converge([]))
        assert "from_underlay" not in underlay_filters(node.host)


def vxlan_packets(pair: Pair) -> list[int]:
    """Packets sent and received by the network's VXLAN device on each host."""
    device = vxlan_name(pair.a.net.names, pair.network.network_id)
    return [
        int(node.host.run("cat", f"/sys/class/net/{device}/statistics/{counter}").stdout)
        for node in (pair.a, pair.b)
        for counter in ("tx_packets", "rx_packets")
    ]


def underlay_filters(host: Host) -> str:
    return host.run("tc", "filter", "show", "dev", "underlay", "ingress").stdout


def test_without_the_underlay_filter_the_vxlan_device_takes_over(
    hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    """Packets arriving by a device without ``from_underlay`` (another filter first, say) are
    decapsulated by the kernel's VXLAN device, whose own filter sends them on the fast way."""
    pair = make_pair(hosts, tmp_path)
    for host in hosts:
        host.run("tc", "filter", "del", "dev", "underlay", "ingress", "prio", str(UNDERLAY_PRIORITY))
        assert "from_underlay" not in underlay_filters(host)
    stream = Stream(pair.px, pair.py, "10.0.0.3")
    try:
        assert stream.send() and stream.send(reverse=True)
    finally:
        stream.close()
    assert pair.a.net.fast.forwarded() > 100 and pair.b.net.fast.forwarded() > 100


def test_vxlan_from_a_host_that_is_no_peer_is_refused(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """The decapsulation skips the host's input hook, so it checks the peers itself: once host a is
    no longer b's peer, a's packets of an established flow reach nobody (the overlay's nftables
    table drops them on the VXLAN device's path)."""
    pair = make_pair(hosts, tmp_path)
    stream = Stream(pair.px, pair.py, "10.0.0.3")
    try:
        assert stream.send()
        (p,) = pair.x.ports
        elsewhere = "192.168.77.9"
        moved = RemotePort(p.id, p.mac, p.ip, "elsewhere", elsewhere)
        network = OverlayNetwork(pair.network.network_id, pair.network.vni, MTU, [elsewhere], [moved])
        asyncio.run(pair.b.overlay.converge([network]))
        stream.server.settimeout(2)
        assert not stream.send(1 << 16)
    finally:
        stream.close()


def test_the_rules_still_decide_every_new_flow(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    pair = make_pair(hosts, tmp_path)
    stream = Stream(pair.px, pair.py, "10.0.0.3")
    try:
        assert stream.send()
        listener = netns.run_in(pair.py, lambda: socket.create_server(("10.0.0.3", CLOSED)))
        try:
            refused = netns.run_in(pair.px, lambda: _connects(("10.0.0.3", CLOSED)))
            assert not refused, "a port the group does not open was reached"
        finally:
            listener.close()
        assert stream.send()  # the open flow was not disturbed
    finally:
        stream.close()


def _connects(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        return False
    return True


def test_a_forged_source_is_not_forwarded(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """An instance that changes its MAC: its packets, even of an established flow, meet the
    anti-spoofing table (and are dropped) instead of skipping it."""
    pair = make_pair(hosts, tmp_path)
    stream = Stream(pair.px, pair.py, "10.0.0.3")
    try:
        assert stream.send()
        assert in_netns(pair.px, "ip", "link", "set", "eth0", "address", "02:a7:de:ad:be:ef").returncode == 0
        stream.server.settimeout(2)
        assert not stream.send(1 << 16)
    finally:
        stream.close()


def test_a_closed_flow_leaves_conntrack_soon(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """conntrack never saw the FIN (it went the fast way): the program shortened the entry's timeout
    to the closing one, on both hosts, instead of leaving it established for days."""
    pair = make_pair(hosts, tmp_path)
    stream = Stream(pair.px, pair.py, "10.0.0.3")
    assert stream.send()
    open_timeouts = conntrack_timeouts(pair.a.host, SERVICE)
    assert open_timeouts and min(open_timeouts) > DEFAULT_CLOSING_S
    stream.close()
    for node in (pair.a, pair.b):
        deadline = time.monotonic() + 3
        while max(remaining := conntrack_timeouts(node.host, SERVICE)) > DEFAULT_CLOSING_S:
            assert time.monotonic() < deadline, remaining  # the FINs take a moment
            time.sleep(0.05)


def test_flows_survive_a_new_agent(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """An agent started again loads its own program and replaces the old one on each device; the old
    one forwarded until then, and an open connection goes on through the new one."""
    pair = make_pair(hosts, tmp_path)
    stream = Stream(pair.px, pair.py, "10.0.0.3")
    try:
        assert stream.send()
        a, b = (start(n.host, n.underlay, tmp_path / n.host.name) for n in (pair.a, pair.b))
        assert stream.send()  # the old program, with its maps, still at work
        pair.converge(a, b)
        assert stream.send() and stream.send(reverse=True)
        assert a.net.fast.forwarded() > 100 and b.net.fast.forwarded() > 100
    finally:
        stream.close()


def one_host(host: Host, tmp_path: Path) -> tuple[Node, InstanceSpec, InstanceSpec]:
    """Two instances in one group on one network, both on ``host``."""
    node = start(host, UNDERLAY[0], tmp_path / host.name)
    network_id = new_id()
    x, y = instance(port(network_id, "10.0.0.2")), instance(port(network_id, "10.0.0.3"))
    security = policy(x, y, group=new_id())
    for spec in (x, y):
        asyncio.run(node.net.attach(spec, security=security))
    return node, x, y


def test_one_host_too(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """Two instances on one host: straight from one veth into the other instance."""
    node, x, y = one_host(hosts[0], tmp_path)
    stream = Stream(node.net.netns_path(x.id), node.net.netns_path(y.id), "10.0.0.3")
    try:
        assert stream.send() and stream.send(reverse=True)
    finally:
        stream.close()
    assert node.net.fast.forwarded() > 100


def test_turned_off(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    pair = make_pair(hosts, tmp_path, fast_path=False)
    stream = Stream(pair.px, pair.py, "10.0.0.3")
    try:
        assert stream.send()
    finally:
        stream.close()
    assert not pair.a.net.fast.active and pair.a.net.fast.forwarded() == 0
    veth = pair.a.net.names.veth(pair.x.ports[0].id)
    assert "bpf" not in pair.a.host.run("tc", "filter", "show", "dev", veth, "ingress").stdout


def test_a_released_instance_gets_nothing_more(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """A deferred release cuts the instance off at once (its namespace lives on a moment): the fast
    path forgets it before that, so an established flow does not go on into it."""
    node, x, y = one_host(hosts[0], tmp_path)
    stream = Stream(node.net.netns_path(x.id), node.net.netns_path(y.id), "10.0.0.3")
    stream.server.settimeout(2)

    async def release_then_send() -> bool:
        await node.net.release(y.id, y.ports, defer=True)
        try:
            return await asyncio.to_thread(stream.send, 1 << 16)
        finally:
            await node.net.settle()

    try:
        assert stream.send() and node.net.fast.forwarded() > 0
        assert not asyncio.run(release_then_send())
    finally:
        stream.close()
