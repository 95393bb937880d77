"""Routers bound to one host in a cluster (services/routerhosts.py), through the real API and SQLite with
fake agents on two hosts: the choice at creation, what each host receives, the overlay entries that
point other hosts at the router's legs, and the rebinding when the router's host goes down."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from atoll.model.overlay import HostNetworkReport
from atoll.services import overlay
from atoll.services.context import Controller
from atoll.services.control import LocalControlPlane
from atoll.services.hosts import register_host
from atoll.store.models import HostRow, InstanceRow
from atoll.store.routing import RouterRow

from .factories import P, import_image
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


@pytest.fixture
async def second(ctl: Controller, agent: FakeAgent) -> FakeAgent:
    other = FakeAgent(host="host-2")
    register_host(ctl, other, name="second", runtime="fake", cgroup_version=2)
    other.control = LocalControlPlane(ctl)
    assert agent.control is not None
    await agent.control.report_host_network(agent.host, HostNetworkReport("192.168.77.1"))
    await other.control.report_host_network(other.host, HostNetworkReport("192.168.77.2"))
    return other


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(f"{P}/{path}", json=body)
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def router_on(client: httpx.AsyncClient, name: str, cidr: str) -> dict[str, Any]:
    net = await post(client, "networks", {"name": f"net-{name}", "subnets": [{"cidr": cidr}]})
    router = await post(client, "routers", {"name": name})
    resp = await client.post(f"{P}/routers/{name}/interfaces", json={"subnet": net["subnets"][0]["id"]})
    assert resp.status_code in (200, 201), resp.text
    out: dict[str, Any] = resp.json()
    assert out["id"] == router["id"]
    return out


async def test_each_router_is_realised_on_one_host(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent, second: FakeAgent
) -> None:
    r1 = await router_on(client, "r1", "10.1.0.0/24")
    r2 = await router_on(client, "r2", "10.2.0.0/24")
    # The least loaded host, ties to the lowest id: one each.
    assert (r1["host"], r2["host"]) == ("host-1", "host-2")
    await agent.routing_changed()
    await second.routing_changed()
    assert [r.id for r in agent.routers] == [r1["id"]]
    assert [r.id for r in second.routers] == [r2["id"]]

    # The router's host goes down: the next host that asks gets it, and every host is nudged.
    with ctl.sessions.begin() as s:
        host = s.get(HostRow, "host-1")
        assert host is not None
        host.state = "down"
    second.calls.clear()
    assert second.control is not None
    moved = await second.control.routers(second.host)
    assert sorted(r.id for r in moved) == sorted([r1["id"], r2["id"]])
    with ctl.sessions() as s:
        row = s.get(RouterRow, r1["id"])
        assert row is not None and row.host_id == "host-2"
    resp = await client.get(f"{P}/routers/r1")
    assert resp.json()["host"] == "host-2"

    # The old host comes back: it no longer gets the router (and so removes it); nothing moves back.
    with ctl.sessions.begin() as s:
        host = s.get(HostRow, "host-1")
        assert host is not None
        host.state = "ready"
    await agent.routing_changed()
    assert agent.routers == []


async def test_overlay_entries_point_at_the_routers_host(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent, second: FakeAgent
) -> None:
    await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])
    router = await router_on(client, "r1", "10.1.0.0/24")
    leg = router["interfaces"][0]
    inst = await post(
        client, "instances", {"image": "busybox", "name": "a", "networks": [{"network": "net-r1"}]}
    )
    with ctl.sessions() as s:
        row = s.get(InstanceRow, inst["id"])
        assert row is not None
        instance_host = row.host_id
    router_host = "host-2" if instance_host == "host-1" else "host-1"
    with ctl.sessions.begin() as s:
        r = s.get(RouterRow, router["id"])
        assert r is not None
        r.host_id = router_host
    underlay = {"host-1": "192.168.77.1", "host-2": "192.168.77.2"}

    # The instance's host reaches the router's leg (its MAC) through the router's host...
    (plan,) = overlay.overlay_networks(ctl, instance_host)
    entry = next(p for p in plan.remote_ports if p.port_id == leg["port"])
    assert (entry.ip, entry.host_id, entry.underlay) == ("10.1.0.1", router_host, underlay[router_host])
    assert plan.peers == [underlay[router_host]]
    # ...and the router's host, with no instance on the network, still gets the network (its VXLAN
    # device) with the instance's port as a remote one.
    (there,) = overlay.overlay_networks(ctl, router_host)
    assert [p.ip for p in there.remote_ports] == [inst["networks"][0]["ip"]]
    assert there.peers == [underlay[instance_host]]
