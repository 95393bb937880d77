"""BIG TCP on the dataplane, on a real kernel (Linux 6.3+; skipped on older kernels): the GSO/GRO sizes
are read back from the kernel on the devices Atoll made, packets above 64 KiB really cross the bridge
through an enforced security group (counted by a rule of the test's own), and a multi-MB transfer
completes on one host and across hosts over VXLAN, where the instances' NICs are back at 64 KiB."""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from atoll.agent.net import bigtcp, netns
from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.names import Names
from atoll.agent.net.overlay import vxlan_name
from atoll.model.instance import InstanceSpec
from atoll.model.network import PortSpec
from atoll.model.overlay import OverlayNetwork, RemotePort
from atoll.model.routing import RouterSpec
from atoll.model.secgroups import Direction, GroupPolicy, HostSecurity, PortSecurity, RuleSpec
from tests.prefix import NET_PREFIX, NFT_TABLE

from .helpers import Host, in_netns, instance, new_id, port
from .nodes import Node, start
from .routing import leg
from .underlay import UNDERLAY, underlay_hosts

pytestmark = pytest.mark.skipif(not bigtcp.probe(), reason="the kernel has no IPv4 BIG TCP (Linux < 6.3)")

SIZE = bigtcp.DEFAULT
MB = 48
COUNTER_TABLE = f"{NFT_TABLE}_big"


def sizes_in(path: Path, ifname: str) -> bigtcp.Sizes:
    return netns.run_in(path, lambda: bigtcp.read(socket.if_nametoindex(ifname)))


SERVER = """
import hashlib, socket
s = socket.create_server(("0.0.0.0", 5299))
print("ready", flush=True)
conn, _ = s.accept()
digest, count = hashlib.sha256(), 0
while chunk := conn.recv(1 << 20):
    digest.update(chunk)
    count += len(chunk)
print(count, digest.hexdigest(), flush=True)
"""
CLIENT = """
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[2]))
with socket.create_connection((sys.argv[1], 5299)) as conn:
    conn.sendall(data)
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


def transfer(server: Path, client: Path, address: str) -> bool:
    """``MB`` MiB of random bytes over one TCP stream: whether the server got exactly what was sent."""
    srv = subprocess.Popen(
        ["nsenter", f"--net={server}", sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        sent = in_netns(client, sys.executable, "-c", CLIENT, address, str(MB << 20), timeout=60)
        assert sent.returncode == 0, sent.stderr
        received = srv.stdout.readline().strip()
    finally:
        srv.kill()  # done by now, unless the client failed
        srv.wait(timeout=30)
        if srv.stdout is not None:
            srv.stdout.close()
    return received == sent.stdout.strip()


def default_group(specs: list[InstanceSpec]) -> HostSecurity:
    """All egress, ingress from the group's members: stateful, through ``br_netfilter`` and conntrack."""
    group = new_id()
    rules = [RuleSpec(Direction.EGRESS), RuleSpec(Direction.INGRESS, remote_group=group)]
    ports = [PortSecurity(p.id, p.network_id, p.ip, p.mac, [group]) for s in specs for p in s.ports]
    return HostSecurity(ports=ports, groups=[GroupPolicy(group, rules, [p.ip for p in ports])])


@pytest.fixture
def big(host: Host, names: Names, netns_dir: Path) -> Iterator[HostNetwork]:
    net = HostNetwork(NetConfig(names=names, netns_dir=netns_dir, host_netns=host.path, gso_size=SIZE))
    yield net
    asyncio.run(HostNetwork(net.config).sync([]))
    assert not {n for n in host.links() if n.startswith(NET_PREFIX)}, host.links()


def test_resolve_reads_the_setting() -> None:
    assert bigtcp.resolve("auto") == bigtcp.DEFAULT
    assert bigtcp.resolve("off") == bigtcp.resolve("0") == bigtcp.LEGACY
    assert bigtcp.resolve("131072") == 131072
    for bad in ("big", "1000", "9999999"):
        with pytest.raises(ValueError, match="ATOLL_BIG_TCP"):
            bigtcp.resolve(bad)


def test_big_packets_cross_an_enforced_security_group(big: HostNetwork, host: Host) -> None:
    """On the bridge path: the fast path is off here, since its packets skip the hook counted below
    (big packets on the fast path: ``test_big_packets_take_the_fast_path``)."""
    big = HostNetwork(replace(big.config, fast_path=False))
    net = new_id()
    a, b = instance(port(net, "10.0.0.2")), instance(port(net, "10.0.0.3"))
    policy = default_group([a, b])
    for spec in (a, b):
        asyncio.run(big.attach(spec, security=policy))
    for spec in (a, b):
        inside = sizes_in(big.netns_path(spec.id), "eth0")
        outside = sizes_in(host.path, big.names.veth(spec.ports[0].id))
        for sizes in (inside, outside):
            assert (sizes.gso_ipv4, sizes.gro_ipv4, sizes.gso, sizes.gro) == (SIZE,) * 4
    # A rule of the test's own counts the frames above 64 KiB that br_netfilter passed through the IP
    # forward hook and conntrack classified as established (the product's chains ran before it).
    rule = "meta length > 65535 ct state established counter"
    script = (
        f"table inet {COUNTER_TABLE} {{ chain count {{ type filter hook forward priority 10; {rule}; }}; }}"
    )
    subprocess.run(["ip", "netns", "exec", host.name, "nft", "-f", "-"], input=script, text=True, check=True)
    try:
        assert transfer(big.netns_path(b.id), big.netns_path(a.id), "10.0.0.3")
        counted = host.run("nft", "list", "table", "inet", COUNTER_TABLE).stdout
        packets = int(counted.split("counter packets ")[1].split()[0])
        assert packets > 0, counted  # the transfer really used packets above 64 KiB
    finally:
        host.run("nft", "delete", "table", "inet", COUNTER_TABLE, check=False)


def test_big_packets_take_the_fast_path(big: HostNetwork) -> None:
    net = new_id()
    a, b = instance(port(net, "10.0.0.2")), instance(port(net, "10.0.0.3"))
    policy = default_group([a, b])
    for spec in (a, b):
        asyncio.run(big.attach(spec, security=policy))
    assert transfer(big.netns_path(b.id), big.netns_path(a.id), "10.0.0.3")
    assert big.fast.forwarded() > 0


def test_a_network_with_peers_or_a_router_keeps_64k_nics(big: HostNetwork) -> None:
    net, other = new_id(), new_id()
    a, c = instance(port(net, "10.0.0.2")), instance(port(other, "10.1.0.2"))
    for spec in (a, c):
        asyncio.run(big.attach(spec))
    at = big.netns_path
    assert sizes_in(at(a.id), "eth0").gso_ipv4 == SIZE
    asyncio.run(big.set_overlaid({net}))  # a port on another host: a VXLAN device will join its bridge
    assert sizes_in(at(a.id), "eth0").gso_ipv4 == bigtcp.LEGACY
    assert sizes_in(at(c.id), "eth0").gso_ipv4 == SIZE
    b = instance(port(net, "10.0.0.3"))  # wired while the network has peers
    asyncio.run(big.attach(b))
    assert sizes_in(at(b.id), "eth0").gso_ipv4 == bigtcp.LEGACY
    asyncio.run(big.set_overlaid(set()))  # the last peer went
    assert sizes_in(at(a.id), "eth0").gso_ipv4 == sizes_in(at(b.id), "eth0").gso_ipv4 == SIZE
    # A router's leg on the other network (its way out may not take big packets), and gone again.
    router = RouterSpec(id=new_id(), interfaces=[leg(other, "10.1.0.1")])
    asyncio.run(big.route([router]))
    assert sizes_in(at(c.id), "eth0").gso_ipv4 == bigtcp.LEGACY
    assert sizes_in(at(a.id), "eth0").gso_ipv4 == SIZE
    asyncio.run(big.route([]))
    assert sizes_in(at(c.id), "eth0").gso_ipv4 == SIZE


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    with underlay_hosts() as pair:
        made = [
            start(host, address, tmp_path / host.name, overlay_fast=False, gso_size=SIZE)
            for host, address in zip(pair, UNDERLAY, strict=True)
        ]
        yield made[0], made[1]
        for node in made:
            node.again().clear()


def test_across_hosts_over_vxlan_with_big_tcp_on(two_hosts: tuple[Node, Node]) -> None:
    (ha, na, oa), (hb, nb, ob) = ((n.host, n.net, n.overlay) for n in two_hosts)
    net, vni = new_id(), 5000 + secrets.randbelow(100000)
    x = instance(
        PortSpec(id=new_id(), network_id=net, mac="02:a7:00:00:00:02", ip="10.0.0.2", prefix_len=24, mtu=1450)
    )
    y = instance(
        PortSpec(id=new_id(), network_id=net, mac="02:a7:00:00:00:03", ip="10.0.0.3", prefix_len=24, mtu=1450)
    )
    asyncio.run(na.attach(x))
    asyncio.run(nb.attach(y))
    # A single host's network has no VXLAN device, and BIG TCP on its NICs.
    assert vxlan_name(na.names, net) not in ha.links()
    assert sizes_in(na.netns_path(x.id), "eth0").gso_ipv4 == SIZE
    for (host, plane, overlay), (other, peer_host) in zip(
        ((ha, na, oa), (hb, nb, ob)), ((y, UNDERLAY[1]), (x, UNDERLAY[0])), strict=True
    ):
        p = other.ports[0]
        wanted = OverlayNetwork(
            net, vni, 1450, [peer_host], [RemotePort(p.id, p.mac, p.ip, "peer", peer_host)]
        )
        asyncio.run(plane.set_overlaid({net}))  # as OverlaySync does, before the device is made
        asyncio.run(overlay.converge([wanted]))
        assert vxlan_name(plane.names, net) in host.links()
    for plane, spec in ((na, x), (nb, y)):
        assert sizes_in(plane.netns_path(spec.id), "eth0").gso_ipv4 == bigtcp.LEGACY
    assert transfer(nb.netns_path(y.id), na.netns_path(x.id), "10.0.0.3")
    # The last peer gone: the device goes too.
    asyncio.run(oa.converge([OverlayNetwork(net, vni, 1450, [], [])]))
    assert vxlan_name(na.names, net) not in ha.links()


def test_an_agent_started_again_fits_the_nics_both_ways(big: HostNetwork) -> None:
    """NICs sized by an earlier agent for peers that left while no agent ran (or set wrong behind its
    back) are fitted by the next agent's resync: its sync, then the overlay refresh that tells it the
    peers (as ``Agent.reconcile`` runs them). Up where the network has no peer, down where it has."""
    net, other = new_id(), new_id()
    a, b = instance(port(net, "10.0.0.2")), instance(port(net, "10.0.0.3"))
    c = instance(port(other, "10.1.0.2"))
    for spec in (a, b, c):
        asyncio.run(big.attach(spec))
    asyncio.run(big.set_overlaid({net}))  # lowered for a peer...
    at = big.netns_path
    assert sizes_in(at(a.id), "eth0").gso_ipv4 == bigtcp.LEGACY
    # ... that leaves while the agent is down; and b's NIC is set down behind the agent's back.
    netns.run_in(at(b.id), lambda: bigtcp.write(socket.if_nametoindex("eth0"), bigtcp.LEGACY))
    again = HostNetwork(big.config)
    asyncio.run(again.sync([a, b, c]))
    asyncio.run(again.set_overlaid({other}))  # the other network has a peer now
    for spec, size in ((a, SIZE), (b, SIZE), (c, bigtcp.LEGACY)):
        sizes = sizes_in(at(spec.id), "eth0")
        assert (sizes.gso_ipv4, sizes.gro_ipv4, sizes.gso, sizes.gro) == (size,) * 4, spec.ports[0].ip
    # Known now: a refresh with nothing changed enters no namespace; a change still re-sizes.
    assert not again._nics.pending(again._attached)
    asyncio.run(again.set_overlaid(set()))
    assert sizes_in(at(c.id), "eth0").gso_ipv4 == SIZE
