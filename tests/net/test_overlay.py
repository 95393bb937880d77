"""Overlay networks across two hosts on a real kernel. Each "host" is a network namespace made by the test,
with its own dataplane (HostNetwork + OverlayPlane); the two are joined by a veth "underlay" with an
address at each end. VXLAN packets only travel on that veth."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.agent.net import hostscan, netns
from atoll.agent.net.overlay import vxlan_name
from atoll.model.instance import InstanceSpec
from atoll.model.network import PortSpec
from atoll.model.overlay import OverlayNetwork, RemotePort
from tests.prefix import NET_PREFIX, NFT_TABLE

from .helpers import in_netns, instance, new_id, ping, port
from .nodes import Node as BaseNode
from .nodes import start
from .underlay import UNDERLAY, underlay_hosts

MTU = 1450
VXLAN_PORT = 4789
"""The port the nodes' VXLAN devices use: ``OverlayConfig``'s default, IANA's."""


class Node(BaseNode):
    """One host of the test, with the overlay's probes."""

    def attach(self, spec: InstanceSpec) -> None:
        asyncio.run(self.net.attach(spec))

    def release(self, spec: InstanceSpec) -> None:
        asyncio.run(self.net.release(spec.id, spec.ports))

    def converge(self, *networks: OverlayNetwork) -> None:
        asyncio.run(self.overlay.converge(networks))

    def fdb(self, network_id: str) -> set[tuple[str, str]]:
        out = self.host.run("bridge", "fdb", "show", "dev", vxlan_name(self.net.names, network_id)).stdout
        return {
            (line.split()[0], line.split()[line.split().index("dst") + 1])
            for line in out.splitlines()
            if " dst " in line
        }


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    made: list[Node] = []
    with underlay_hosts() as pair:
        for host, address in zip(pair, UNDERLAY, strict=True):
            node = start(host, address, tmp_path / host.name, overlay_fast=False)
            made.append(Node(node.host, node.underlay, node.net, node.overlay))
        yield made[0], made[1]
        for node in made:
            node.again().clear()


def overlay_port(network_id: str, ip: str) -> PortSpec:
    p = port(network_id, ip)
    return PortSpec(id=p.id, network_id=p.network_id, mac=p.mac, ip=p.ip, prefix_len=p.prefix_len, mtu=MTU)


def remote(spec: InstanceSpec, node: Node) -> RemotePort:
    (p,) = spec.ports
    return RemotePort(p.id, p.mac, p.ip, node.host.name, node.underlay)


def test_instances_on_two_hosts_talk_over_vxlan(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    net, vni = new_id(), 5000 + secrets.randbelow(100000)
    x = instance(overlay_port(net, "10.0.0.2"))
    y = instance(overlay_port(net, "10.0.0.3"))
    z = instance(overlay_port(net, "10.0.0.4"))
    a.attach(x)
    b.attach(y)
    b.attach(z)
    a.converge(OverlayNetwork(net, vni, MTU, [b.underlay], [remote(y, b), remote(z, b)]))
    b.converge(OverlayNetwork(net, vni, MTU, [a.underlay], [remote(x, a)]))

    px, py, pz = (node.net.netns_path(s.id) for node, s in ((a, x), (b, y), (b, z)))
    assert ping(px, "10.0.0.3") and ping(px, "10.0.0.4")
    assert ping(py, "10.0.0.2") and ping(pz, "10.0.0.2")

    vx = vxlan_name(a.net.names, net)
    details = a.host.run("ip", "-d", "link", "show", vx).stdout
    assert f"vxlan id {vni} local 192.168.77.1" in details and "nolearning" in details
    assert f"dstport {VXLAN_PORT}" in details and f"mtu {MTU}" in details
    assert f"master {a.net.names.bridge(net)}" in details
    assert "mtu 1450" in in_netns(px, "ip", "link", "show", "eth0").stdout
    assert a.fdb(net) == {
        ("00:00:00:00:00:00", b.underlay),
        (y.ports[0].mac, b.underlay),
        (z.ports[0].mac, b.underlay),
    }
    # A full-size frame crosses: 1450 - 28 bytes of IP and ICMP headers, not fragmented on the way.
    assert in_netns(px, "busybox", "ping", "-c", "1", "-W", "2", "-s", "1422", "10.0.0.3").returncode == 0

    # z moves to host a, keeping its address and MAC; the controller's next description follows it.
    b.release(z)
    a.attach(z)
    a.converge(OverlayNetwork(net, vni, MTU, [b.underlay], [remote(y, b)]))
    b.converge(OverlayNetwork(net, vni, MTU, [a.underlay], [remote(x, a), remote(z, a)]))
    pz = a.net.netns_path(z.id)
    assert ping(py, "10.0.0.4") and ping(pz, "10.0.0.3") and ping(px, "10.0.0.4")
    assert (z.ports[0].mac, b.underlay) not in a.fdb(net)
    assert (z.ports[0].mac, a.underlay) in b.fdb(net)

    # Idempotent, and a lost device or entry comes back.
    b.converge(OverlayNetwork(net, vni, MTU, [a.underlay], [remote(x, a), remote(z, a)]))
    b.host.run("ip", "link", "del", vxlan_name(b.net.names, net))
    b.converge(OverlayNetwork(net, vni, MTU, [a.underlay], [remote(x, a), remote(z, a)]))
    assert ping(py, "10.0.0.2")

    # Removing everything leaves nothing on either host.
    for node, spec in ((a, x), (a, z), (b, y)):
        node.release(spec)
        node.converge()
    assert a.ours() == set() and b.ours() == set()


def test_networks_stay_apart_on_the_wire(nodes: tuple[Node, Node]) -> None:
    """Two overlay networks with the same CIDR (two projects) across the same two hosts: each instance
    reaches its own network's peer only; the VNI keeps them apart."""
    a, b = nodes
    n1, n2 = new_id(), new_id()
    v1, v2 = 7000 + secrets.randbelow(1000), 9000 + secrets.randbelow(1000)
    x1, y1 = instance(overlay_port(n1, "10.0.0.2")), instance(overlay_port(n1, "10.0.0.3"))
    x2, y2 = instance(overlay_port(n2, "10.0.0.2")), instance(overlay_port(n2, "10.0.0.3"))
    for spec in (x1, x2):
        a.attach(spec)
    for spec in (y1, y2):
        b.attach(spec)
    a.converge(
        OverlayNetwork(n1, v1, MTU, [b.underlay], [remote(y1, b)]),
        OverlayNetwork(n2, v2, MTU, [b.underlay], [remote(y2, b)]),
    )
    b.converge(
        OverlayNetwork(n1, v1, MTU, [a.underlay], [remote(x1, a)]),
        OverlayNetwork(n2, v2, MTU, [a.underlay], [remote(x2, a)]),
    )
    px1, px2 = a.net.netns_path(x1.id), a.net.netns_path(x2.id)
    assert ping(px1, "10.0.0.3") and ping(px2, "10.0.0.3")
    mac_seen = {
        p: in_netns(p, "ip", "neigh", "show", "10.0.0.3").stdout.split()[4] for p in (px1, px2)
    }  # each resolved the address to its own network's instance
    assert mac_seen == {px1: y1.ports[0].mac, px2: y2.ports[0].mac}

    # A VXLAN device whose VNI changed (say, a network re-created) is replaced.
    a.converge(
        OverlayNetwork(n1, v1 + 1, MTU, [b.underlay], [remote(y1, b)]),
        OverlayNetwork(n2, v2, MTU, [b.underlay], [remote(y2, b)]),
    )
    assert f"vxlan id {v1 + 1} " in a.host.run("ip", "-d", "link", "show", vxlan_name(a.net.names, n1)).stdout
    for node, specs in ((a, (x1, x2)), (b, (y1, y2))):
        for spec in specs:
            node.release(spec)
        node.converge()


def test_host_scan_reports_the_underlay_and_not_our_links(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    a.host.run("ip", "route", "add", "default", "via", "192.168.77.2")
    a.host.run("ip", "route", "add", "172.31.0.0/16", "via", "192.168.77.2")
    spec = instance(overlay_port(new_id(), "10.0.0.2"))
    a.attach(spec)
    a.host.run("ip", "addr", "add", "10.0.0.1/24", "dev", a.net.names.bridge(spec.ports[0].network_id))
    report = netns.run_in(a.host.path, lambda: hostscan.scan(NET_PREFIX))
    assert report.underlay_ip == "192.168.77.1" and report.underlay_mtu == 1500
    assert {(c.interface, c.cidr) for c in report.cidrs} == {
        ("underlay", "192.168.77.0/24"),
        ("underlay", "172.31.0.0/16"),
    }  # not the bridge's 10.0.0.0/24 (ours), not the default route
    assert netns.run_in(a.host.path, lambda: hostscan.scan(NET_PREFIX, "10.9.9.9")).underlay_ip == "10.9.9.9"
    a.release(spec)


def test_vxlan_port_takes_peers_only(nodes: tuple[Node, Node]) -> None:
    """While a host has overlay networks, its VXLAN port drops packets from anyone but its peers: a
    forged packet from another address of the underlay is counted and dropped, the peer's traffic flows."""
    a, b = nodes
    net, vni = new_id(), 5000 + secrets.randbelow(100000)
    x, y = instance(overlay_port(net, "10.0.0.2")), instance(overlay_port(net, "10.0.0.3"))
    a.attach(x)
    b.attach(y)
    a.converge(OverlayNetwork(net, vni, MTU, [b.underlay], [remote(y, b)]))
    b.converge(OverlayNetwork(net, vni, MTU, [a.underlay], [remote(x, a)]))
    assert ping(a.net.netns_path(x.id), "10.0.0.3")
    table = f"{NFT_TABLE}_vxlan"
    assert "192.168.77.2" in a.host.run("nft", "list", "set", "inet", table, "peers").stdout
    # Tunnel packets between peers are not tracked (the host's tables use conntrack, so it is active):
    # no entry for the VXLAN flow, in either direction.
    tracked = a.host.run("cat", "/proc/net/nf_conntrack").stdout
    assert f"dport={VXLAN_PORT} " not in tracked, tracked

    def dropped() -> int:
        listed = a.host.run("nft", "list", "chain", "inet", table, "input").stdout
        return int(listed.split("counter packets ")[1].split()[0])

    assert dropped() == 0
    b.host.run("ip", "addr", "add", "192.168.77.9/24", "dev", "underlay")
    forge = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('192.168.77.9', 0)); "
        f"s.sendto(bytes(8) + bytes(64), ('{a.underlay}', {VXLAN_PORT}))"
    )
    b.host.run(sys.executable, "-c", forge)
    assert dropped() == 1
    assert ping(a.net.netns_path(x.id), "10.0.0.3")  # the peer's packets still pass

    # Without overlay networks the table goes.
    a.release(x)
    a.converge()
    assert table not in a.host.run("nft", "list", "tables").stdout
    b.release(y)
    b.converge()
