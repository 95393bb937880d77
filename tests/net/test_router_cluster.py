"""A router realised on one host of two, serving an instance on the other over an overlay network.

Two host namespaces joined by a veth underlay (tests/net/underlay.py); host A (the router's host, its
network node) also has an uplink to an "outside" namespace. Each host runs the agent's dataplane classes
(HostNetwork, OverlayPlane) with the descriptions the controller would hand it
(services/routerhosts.py, services/overlay.py): A gets the router and, for the overlay network, the
instance's port on B as a remote port; B gets only the instance and the router's leg as a remote port.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from atoll.agent.net.names import ROUTER
from atoll.model.overlay import OverlayNetwork, RemotePort
from atoll.model.routing import FloatingMapping, RouterGateway, RouterSpec

from .helpers import Host, in_netns, instance, new_id, ping, port
from .nodes import Node, start
from .routing import OUTSIDE_IP, UPLINK, leg, outside_of, source_seen_outside
from .underlay import UNDERLAY, underlay_hosts

MTU = 1450
NET, EXT = new_id(), new_id()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    with underlay_hosts() as pair:
        made = [
            start(host, address, tmp_path / host.name, overlay_fast=False)
            for host, address in zip(pair, UNDERLAY, strict=True)
        ]
        yield made[0], made[1]
        for node in made:
            node.again().clear()


@pytest.fixture
def outside(nodes: tuple[Node, Node]) -> Iterator[Host]:
    """The outside world at the far end of host A's uplink."""
    with outside_of(nodes[0].host) as out:
        yield out


def test_router_on_one_host_serves_an_instance_on_another(nodes: tuple[Node, Node], outside: Host) -> None:
    a, b = nodes
    vni = 5000 + secrets.randbelow(100000)
    x = instance(replace(port(NET, "10.5.0.5", gateway="10.5.0.1"), mtu=MTU))
    inner = replace(leg(NET, "10.5.0.1"), mtu=MTU)
    ext = leg(EXT, "203.0.113.2", uplink=UPLINK)
    fip = "203.0.113.10"
    router = RouterSpec(
        id=new_id(),
        interfaces=[inner],
        gateway=RouterGateway(leg=ext, nexthop=OUTSIDE_IP, floating=[FloatingMapping(fip, "10.5.0.5")]),
    )
    (xp,) = x.ports

    # Host A: only the router (its bridge on the overlay network comes from the router's leg).
    asyncio.run(a.net.route([router]))
    asyncio.run(
        a.overlay.converge(
            [OverlayNetwork(NET, vni, MTU, [b.underlay], [RemotePort(xp.id, xp.mac, xp.ip, "b", b.underlay)])]
        )
    )
    # Host B: only the instance, and the router's leg as a remote port on A.
    asyncio.run(b.net.attach(x))
    asyncio.run(b.net.route([]))
    asyncio.run(
        b.overlay.converge(
            [
                OverlayNetwork(
                    NET,
                    vni,
                    MTU,
                    [a.underlay],
                    [RemotePort(inner.port_id, inner.mac, inner.ip, "a", a.underlay)],
                )
            ]
        )
    )
    router_legs = {n for n in b.host.links() if b.net.names.kind_of(n) == ROUTER}
    assert router_legs == set()  # the router exists on A only
    assert not b.net.router_path(router.id).exists()

    path = b.net.netns_path(x.id)
    assert ping(path, "10.5.0.1")  # the router's leg, across the underlay
    # A floating IP: reachable from the outside, and its port's traffic leaves with it.
    assert ping(outside.path, fip)
    assert source_seen_outside(outside, path) == fip
    # The router answers on A's uplink; B has no bridge of the external network at all.
    assert b.net.names.bridge(EXT) not in b.host.links()
    assert "10.5.0.1/24" in in_netns(a.net.router_path(router.id), "ip", "-o", "-4", "addr").stdout

    # Without the floating IP: SNAT, as the router's own external address.
    assert router.gateway is not None
    plain = replace(router, gateway=replace(router.gateway, floating=[]))
    asyncio.run(a.net.route([plain]))
    assert ping(path, OUTSIDE_IP)
    assert source_seen_outside(outside, path) == "203.0.113.2"
    assert not ping(outside.path, fip)
