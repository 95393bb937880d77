"""Routers on a real kernel: namespaces joining networks, SNAT and floating IPs towards an "outside"
namespace that the test makes and joins to the host namespace with a veth (the uplink)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from pyroute2 import Conntrack

from atoll.agent.net import netns
from atoll.agent.net.dataplane import HostNetwork
from atoll.model.routing import FloatingMapping, RouterGateway, RouterLeg, RouterSpec, StaticRoute

from .helpers import Host, in_netns, instance, new_id, ping, port
from .routing import OUTSIDE_IP, UPLINK, leg, outside_of, source_seen_outside

NET_A, NET_B, EXT = new_id(), new_id(), new_id()


@pytest.fixture
def outside(host: Host) -> Iterator[Host]:
    with outside_of(host) as out:
        yield out


def tracked(router: Path, address: str) -> bool:
    """Whether the router's conntrack table has a flow to ``address``."""

    def look() -> bool:
        with closing(Conntrack()) as ct:
            return any(e.tuple_orig.daddr == address for e in ct.dump_entries())

    return netns.run_in(router, look)


def test_networks_talk_only_through_a_router(dataplane: HostNetwork, host: Host) -> None:
    a = instance(port(NET_A, "10.1.0.2", gateway="10.1.0.1"))
    b = instance(port(NET_B, "10.2.0.2", gateway="10.2.0.1"))
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.attach(b))
    pa, pb = dataplane.netns_path(a.id), dataplane.netns_path(b.id)
    assert not ping(pa, "10.2.0.2")

    router = RouterSpec(id=new_id(), interfaces=[leg(NET_A, "10.1.0.1"), leg(NET_B, "10.2.0.1")])
    asyncio.run(dataplane.route([router]))
    assert ping(pa, "10.2.0.2")
    assert ping(pb, "10.1.0.2")
    assert ping(pa, "10.1.0.1")  # the gateway answers: it is the router's leg
    inside = in_netns(dataplane.router_path(router.id), "ip", "-o", "-4", "addr").stdout
    assert "10.1.0.1/24" in inside and "10.2.0.1/24" in inside
    legs = {dataplane.names.router_leg(leg.port_id) for leg in router.interfaces}
    assert legs <= host.links()

    # The same again changes nothing; removing one interface cuts that network off.
    asyncio.run(dataplane.route([router]))
    assert ping(pa, "10.2.0.2")
    one_leg = RouterSpec(id=router.id, interfaces=router.interfaces[:1])
    asyncio.run(dataplane.route([one_leg]))
    assert not ping(pa, "10.2.0.2")
    assert dataplane.names.router_leg(router.interfaces[1].port_id) not in host.links()

    # No router: nothing of it is left, and the networks are apart again.
    asyncio.run(dataplane.route([]))
    assert not ping(pa, "10.2.0.2")
    assert not netns.is_netns(dataplane.router_path(router.id))
    assert not {n for n in host.links() if dataplane.names.kind_of(n) == "r"}


def test_a_router_only_network_keeps_its_bridge(dataplane: HostNetwork, host: Host) -> None:
    """A network with a router on it but no instance on this host still has its bridge."""
    router = RouterSpec(id=new_id(), interfaces=[leg(NET_A, "10.1.0.1")])
    asyncio.run(dataplane.route([router]))
    asyncio.run(dataplane.sync([]))  # an instance sync must not take the router's bridge away
    assert dataplane.names.bridge(NET_A) in host.links()
    asyncio.run(dataplane.route([]))
    assert dataplane.names.bridge(NET_A) not in host.links()


def test_static_routes(dataplane: HostNetwork) -> None:
    base = RouterSpec(id=new_id(), interfaces=[leg(NET_A, "10.1.0.1")])
    routed = RouterSpec(
        id=base.id, interfaces=base.interfaces, routes=[StaticRoute("10.99.0.0/16", "10.1.0.7")]
    )
    asyncio.run(dataplane.route([routed]))
    path = dataplane.router_path(base.id)
    assert "10.99.0.0/16 via 10.1.0.7" in in_netns(path, "ip", "route").stdout
    asyncio.run(dataplane.route([base]))
    assert "10.99.0.0/16" not in in_netns(path, "ip", "route").stdout
    asyncio.run(dataplane.route([]))


def gateway_router(router_id: str, inner: RouterLeg, ext: RouterLeg, *, snat: bool = True,
                   floating: list[FloatingMapping] | None = None) -> RouterSpec:  # fmt: skip
    gw = RouterGateway(leg=ext, nexthop=OUTSIDE_IP, snat=snat, floating=floating or [])
    return RouterSpec(id=router_id, interfaces=[inner], gateway=gw)


def test_snat_to_the_outside(dataplane: HostNetwork, host: Host, outside: Host) -> None:
    a = instance(port(NET_A, "10.1.0.2", gateway="10.1.0.1"))
    asyncio.run(dataplane.attach(a))
    pa = dataplane.netns_path(a.id)
    assert not ping(pa, OUTSIDE_IP)
    inner, ext = leg(NET_A, "10.1.0.1"), leg(EXT, "203.0.113.5", uplink=UPLINK)
    router_id = new_id()
    asyncio.run(dataplane.route([gateway_router(router_id, inner, ext)]))
    # The outside has no route to 10.1.0.0/24: it can only answer the router's address.
    assert ping(pa, OUTSIDE_IP)
    assert source_seen_outside(outside, pa) == "203.0.113.5"
    bridge = dataplane.names.bridge(EXT)
    assert f"master {bridge}" in host.run("ip", "link", "show", UPLINK).stdout

    # Without SNAT the instance's own address goes out: the outside must route it back itself.
    asyncio.run(dataplane.route([gateway_router(router_id, inner, ext, snat=False)]))
    assert not ping(pa, OUTSIDE_IP)
    outside.run("ip", "route", "add", "10.1.0.0/24", "via", "203.0.113.5")
    assert ping(pa, OUTSIDE_IP)
    assert source_seen_outside(outside, pa) == "10.1.0.2"

    # With the gateway gone, the uplink is released, not deleted.
    asyncio.run(dataplane.route([]))
    assert UPLINK in host.links() and "master" not in host.run("ip", "link", "show", UPLINK).stdout


def test_floating_ip_follows_its_port(dataplane: HostNetwork, host: Host, outside: Host) -> None:
    a = instance(port(NET_A, "10.1.0.2", gateway="10.1.0.1"))
    c = instance(port(NET_A, "10.1.0.3", gateway="10.1.0.1"))
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.attach(c))
    out_path = outside.path
    inner, ext = leg(NET_A, "10.1.0.1"), leg(EXT, "203.0.113.5", uplink=UPLINK)
    router_id = new_id()
    fip = "203.0.113.50"
    asyncio.run(
        dataplane.route([gateway_router(router_id, inner, ext, floating=[FloatingMapping(fip, "10.1.0.2")])])
    )
    assert ping(out_path, fip)
    assert source_seen_outside(outside, dataplane.netns_path(a.id)) == fip
    assert source_seen_outside(outside, dataplane.netns_path(c.id)) == "203.0.113.5"  # SNAT, as before
    assert ping(dataplane.netns_path(c.id), fip)  # hairpin: a neighbour reaches it by its floating IP
    # With SNAT on, the outside reaches instances only through floating IPs, even with a route.
    outside.run("ip", "route", "add", "10.1.0.0/24", "via", "203.0.113.5")
    assert not ping(out_path, "10.1.0.3")

    assert tracked(dataplane.router_path(router_id), fip)  # the outside's pings, tracked and DNATed
    moved = gateway_router(router_id, inner, ext, floating=[FloatingMapping(fip, "10.1.0.3")])
    asyncio.run(dataplane.route([moved]))
    assert not tracked(dataplane.router_path(router_id), fip)  # flows to the old port are forgotten
    asyncio.run(dataplane.release(a.id, a.ports))  # only c can answer now
    assert ping(out_path, fip)
    assert source_seen_outside(outside, dataplane.netns_path(c.id)) == fip

    asyncio.run(dataplane.route([gateway_router(router_id, inner, ext)]))  # disassociated
    assert not ping(out_path, fip)
    asyncio.run(dataplane.route([]))


def test_restarted_agent_keeps_routing_and_removes_stale_routers(
    dataplane: HostNetwork, host: Host, outside: Host
) -> None:
    a = instance(port(NET_A, "10.1.0.2", gateway="10.1.0.1"))
    b = instance(port(NET_B, "10.2.0.2", gateway="10.2.0.1"))
    asyncio.run(dataplane.attach(a))
    asyncio.run(dataplane.attach(b))
    keep = RouterSpec(id=new_id(), interfaces=[leg(NET_A, "10.1.0.1"), leg(NET_B, "10.2.0.1")])
    stale = gateway_router(new_id(), leg(NET_A, "10.1.0.254"), leg(EXT, "203.0.113.6", uplink=UPLINK))
    asyncio.run(dataplane.route([keep, stale]))
    pa = dataplane.netns_path(a.id)
    assert ping(pa, "10.2.0.2")

    # A new agent (nothing in memory) is told only of `keep`: traffic flows on, the stale router goes.
    fresh = HostNetwork(dataplane.config)
    asyncio.run(fresh.sync([a, b], routers=[keep]))
    assert ping(pa, "10.2.0.2")
    assert not netns.is_netns(fresh.router_path(stale.id))
    assert dataplane.names.router_leg(stale.interfaces[0].port_id) not in host.links()
    assert dataplane.names.bridge(EXT) not in host.links()
    assert "master" not in host.run("ip", "link", "show", UPLINK).stdout
    asyncio.run(fresh.route([]))


def test_a_missing_uplink_fails_only_its_router(dataplane: HostNetwork) -> None:
    a = instance(port(NET_A, "10.1.0.2", gateway="10.1.0.1"))
    b = instance(port(NET_B, "10.2.0.2", gateway="10.2.0.1"))
    asyncio.run(dataplane.attach(a))
    good = RouterSpec(id=new_id(), interfaces=[leg(NET_A, "10.1.0.1"), leg(NET_B, "10.2.0.1")])
    bad = gateway_router(new_id(), leg(NET_B, "10.2.0.254"), leg(EXT, "203.0.113.5", uplink="nosuchlink0"))
    asyncio.run(dataplane.route([bad, good]))
    asyncio.run(dataplane.attach(b))  # instances still attach
    assert ping(dataplane.netns_path(a.id), "10.2.0.2")
    asyncio.run(dataplane.route([]))


def test_projects_meet_only_through_floating_ips(dataplane: HostNetwork, outside: Host) -> None:
    """Two projects' routers on one external network, with the same tenant CIDR behind each: one
    project's instance reaches the other's through its floating IP."""
    x = instance(port(NET_A, "10.1.0.2", gateway="10.1.0.1"))
    y = instance(port(NET_B, "10.1.0.2", gateway="10.1.0.1"))
    asyncio.run(dataplane.attach(x))
    asyncio.run(dataplane.attach(y))
    r1 = gateway_router(new_id(), leg(NET_A, "10.1.0.1"), leg(EXT, "203.0.113.5", uplink=UPLINK))
    fip = FloatingMapping("203.0.113.60", "10.1.0.2")
    r2 = gateway_router(
        new_id(), leg(NET_B, "10.1.0.1"), leg(EXT, "203.0.113.6", uplink=UPLINK), floating=[fip]
    )
    asyncio.run(dataplane.route([r1, r2]))
    assert ping(dataplane.netns_path(x.id), "203.0.113.60")
    assert source_seen_outside(outside, dataplane.netns_path(y.id)) == "203.0.113.60"
    asyncio.run(dataplane.route([]))
