"""The dataplane against a real kernel: bridges, veths, instance namespaces and nftables, in a host
namespace per test (see conftest)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from atoll.agent.net import netns
from atoll.agent.net.dataplane import HostNetwork, bridge_mac
from atoll.model.errors import RuntimeFailure

from .helpers import Host, in_netns, instance, new_id, ping, port

NET_A, NET_B = new_id(), new_id()


def test_two_instances_on_one_network_talk(dataplane: HostNetwork, host: Host) -> None:
    a = instance(port(NET_A, "10.0.0.2", gateway="10.0.0.1"))
    b = instance(port(NET_A, "10.0.0.3", gateway="10.0.0.1"))
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.attach(b))
    assert ping(dataplane.netns_path(a.id), "10.0.0.3")
    assert ping(dataplane.netns_path(b.id), "10.0.0.2")
    bridge = dataplane.names.bridge(NET_A)
    assert host.links() == {bridge, dataplane.names.veth(a.ports[0].id), dataplane.names.veth(b.ports[0].id)}
    # The bridge has no address: the host is not on tenant networks. And no IPv6 link-local either.
    assert host.run("ip", "-o", "addr", "show", "dev", bridge).stdout == ""
    assert host.run("cat", f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").stdout.strip() == "1"
    assert bridge_mac(NET_A) in host.run("ip", "link", "show", bridge).stdout


def test_inside_the_instance(dataplane: HostNetwork) -> None:
    p0 = port(NET_A, "10.0.0.9", gateway="10.0.0.1")
    p1 = port(NET_B, "172.30.1.5", prefix_len=16, gateway="172.30.0.1", device="eth1")
    spec = instance(p0, p1)
    asyncio.run(dataplane.attach(spec))
    path = dataplane.netns_path(spec.id)
    assert netns.is_netns(path)
    addrs = {
        line.split()[1]: line.split()[3]
        for line in in_netns(path, "ip", "-o", "-4", "addr").stdout.splitlines()
    }
    assert addrs == {"lo": "127.0.0.1/8", "eth0": "10.0.0.9/24", "eth1": "172.30.1.5/16"}
    links = in_netns(path, "ip", "-o", "link").stdout
    assert p0.mac in links and p1.mac in links
    assert "mtu 1500" in links
    routes = in_netns(path, "ip", "route").stdout
    assert "default via 10.0.0.1 dev eth0" in routes  # only the first NIC with a gateway routes by default
    assert routes.count("default") == 1
    assert in_netns(path, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify").stdout.strip() == "1"


def test_networks_are_isolated_even_when_the_host_routes(dataplane: HostNetwork, host: Host) -> None:
    """Give the bridges addresses and turn forwarding on in the host, as a careless admin (or another
    tool) might: the host still refuses to route between tenant networks, and to be reached from them."""
    a = instance(port(NET_A, "10.1.0.2", gateway="10.1.0.1"))
    b = instance(port(NET_B, "10.2.0.2", gateway="10.2.0.1"))
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.attach(b))
    names = dataplane.names
    host.run("ip", "addr", "add", "10.1.0.1/24", "dev", names.bridge(NET_A))
    host.run("ip", "addr", "add", "10.2.0.1/24", "dev", names.bridge(NET_B))
    host.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    pa, pb = dataplane.netns_path(a.id), dataplane.netns_path(b.id)
    assert not ping(pa, "10.2.0.2")
    assert not ping(pb, "10.1.0.2")
    assert not ping(pa, "10.1.0.1")  # the host itself is out of reach too

    # The control: without our rules, this host would route between them.
    host.run("nft", "delete", "table", "inet", names.table)
    host.run("nft", "delete", "table", "arp", names.table)
    # The refused pings left neighbour entries behind: b's gateway FAILED, and a's gateway still
    # INCOMPLETE (its last probes, dropped by our ARP rule, run for 3 s, longer than a 2 s ping), which
    # would then fail and drop the control's first echo queued on it. Start the resolutions afresh.
    for path in (pa, pb):
        in_netns(path, "ip", "neigh", "flush", "all")
    assert ping(pa, "10.2.0.2")
    # The next sync notices the missing table and puts it back.
    asyncio.run(dataplane.sync([a, b]))
    assert not ping(pa, "10.2.0.2")


def test_the_same_cidr_on_two_networks(dataplane: HostNetwork) -> None:
    """Two projects may both use 10.0.0.0/24: each network works and neither reaches the other."""
    a1 = instance(port(NET_A, "10.0.0.2", gateway="10.0.0.1"))
    a2 = instance(port(NET_A, "10.0.0.3", gateway="10.0.0.1"))
    b1 = instance(port(NET_B, "10.0.0.2", gateway="10.0.0.1"))
    b3 = instance(port(NET_B, "10.0.0.4", gateway="10.0.0.1"))
    for spec in (a1, a2, b1, b3):
        asyncio.run(dataplane.attach(spec))
    assert ping(dataplane.netns_path(a1.id), "10.0.0.3")
    assert ping(dataplane.netns_path(b1.id), "10.0.0.4")
    assert not ping(dataplane.netns_path(a1.id), "10.0.0.4")
    assert not ping(dataplane.netns_path(b1.id), "10.0.0.3")


def test_release_removes_everything_and_keeps_what_others_use(dataplane: HostNetwork, host: Host) -> None:
    a = instance(port(NET_A, "10.0.0.2"))
    b = instance(port(NET_A, "10.0.0.3"))
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.attach(b))
    asyncio.run(dataplane.release(a.id))
    assert not dataplane.netns_path(a.id).exists()
    assert host.links() == {dataplane.names.bridge(NET_A), dataplane.names.veth(b.ports[0].id)}
    assert host.nft_tables()
    asyncio.run(dataplane.release(b.id))
    asyncio.run(dataplane.release(b.id))  # idempotent
    assert host.links() == set()
    assert host.nft_tables() == set()  # no bridges, no tables


def test_attach_is_idempotent(dataplane: HostNetwork, host: Host) -> None:
    a = instance(port(NET_A, "10.0.0.2"))
    asyncio.run(dataplane.attach(a))

    def indexed() -> list[str]:  # "index: name" of each link (its state flags settle asynchronously)
        return [
            line.split("@")[0].split(" <")[0] for line in host.run("ip", "-o", "link").stdout.splitlines()
        ]

    before = indexed()
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.sync([a]))
    assert indexed() == before  # same links, same indexes


def test_a_restarted_agent_resyncs_and_removes_leftovers(dataplane: HostNetwork, host: Host) -> None:
    keep = instance(port(NET_A, "10.0.0.2"))
    peer = instance(port(NET_A, "10.0.0.3"))
    gone = instance(port(NET_B, "10.9.0.2"))
    for spec in (keep, peer, gone):
        asyncio.run(dataplane.attach(spec))
    names = dataplane.names
    stray = f"{names.prefix}v-{new_id()[:8]}"
    host.run("ip", "link", "add", stray, "type", "veth", "peer", "name", "other0")
    foreign = "eth7"  # not ours: never touched
    host.run("ip", "link", "add", foreign, "type", "veth", "peer", "name", "eth8")
    host.run("nft", "add", "table", "inet", "someone_else")
    # The peer's host end vanished while the agent was away: the next agent rebuilds it.
    host.run("ip", "link", "del", names.veth(peer.ports[0].id))

    restarted = HostNetwork(dataplane.config)
    asyncio.run(restarted.sync([keep, peer]))

    assert host.links() == {
        names.bridge(NET_A),
        names.veth(keep.ports[0].id),
        names.veth(peer.ports[0].id),
        foreign,
        "eth8",
    }
    assert not dataplane.netns_path(gone.id).exists()
    assert ping(dataplane.netns_path(keep.id), "10.0.0.3")
    assert "table inet someone_else" in host.nft_tables()
    host.run("ip", "link", "del", foreign)
    host.run("nft", "delete", "table", "inet", "someone_else")


def test_a_released_instance_is_not_brought_back_by_a_stale_sync(dataplane: HostNetwork) -> None:
    a = instance(port(NET_A, "10.0.0.2"))
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.release(a.id))
    asyncio.run(dataplane.sync([a]))  # assignments read before the removal
    assert not dataplane.netns_path(a.id).exists()


def test_links_of_others_are_never_taken_for_ours(dataplane: HostNetwork, host: Host) -> None:
    a = instance(port(NET_A, "10.0.0.2"))
    clash = dataplane.names.veth(a.ports[0].id)
    host.run("ip", "link", "add", clash, "type", "veth", "peer", "name", "other0")  # not ours: no alias
    with pytest.raises(RuntimeFailure, match="is not the veth of port"):
        asyncio.run(dataplane.attach(a))
    assert clash in host.links()  # the failed attach took nothing away from its owner
    assert not dataplane.netns_path(a.id).exists()
    host.run("ip", "link", "del", clash)


def test_namespaces_survive_the_agent(dataplane: HostNetwork, netns_dir: Path) -> None:
    """The namespace is a bind mount: it lives on without any process, so a stopped instance keeps
    its address and MAC."""
    a = instance(port(NET_A, "10.0.0.2"))
    asyncio.run(dataplane.attach(a))
    path = dataplane.netns_path(a.id)
    assert path.parent == netns_dir
    assert "10.0.0.2/24" in in_netns(path, "ip", "-o", "addr").stdout
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", str(path)], capture_output=True, text=True)
    assert out.stdout.strip() == "nsfs"


def test_netns_without_host_namespace(tmp_path: Path) -> None:
    """``create``/``remove`` on their own; ``run_in`` leaves the calling thread where it was."""
    path = tmp_path / "ns"
    netns.create(path)
    try:
        assert netns.is_netns(path)
        inside = netns.run_in(path, lambda: Path("/proc/thread-self/ns/net").resolve().name)
        outside = Path("/proc/thread-self/ns/net").resolve().name
        assert inside != outside
        netns.create(path)  # idempotent
    finally:
        netns.remove(path)
    assert not path.exists()
    netns.remove(path)


def test_sync_keeps_late_attaches_and_drops_what_is_no_longer_assigned(dataplane: HostNetwork) -> None:
    a = instance(port(NET_A, "10.0.0.2"))
    b = instance(port(NET_A, "10.0.0.3"))
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.sync([a]))
    asyncio.run(dataplane.attach(b))  # created after the next sync's assignments were read
    asyncio.run(dataplane.sync([a]))
    assert dataplane.netns_path(b.id).exists()
    asyncio.run(dataplane.sync([b]))  # a is no longer assigned here
    assert not dataplane.netns_path(a.id).exists()
    assert ping(dataplane.netns_path(b.id), "10.0.0.3")
