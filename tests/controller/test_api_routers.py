"""Routers, external networks and floating IPs through the real API and SQLite, with a fake host agent
that fetches its routers as the real one does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from atoll.services.context import Controller
from atoll.store.models import IpAllocationRow, PortRow

from .factories import P, error_of, import_image, run_instance
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
async def busybox(client: httpx.AsyncClient) -> dict[str, Any]:
    return await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int = 201, project: str = "default"
) -> dict[str, Any]:
    resp = await client.post(f"/v1/projects/{project}/{path}", json=body)
    assert resp.status_code == status, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def ext_network(client: httpx.AsyncClient) -> dict[str, Any]:
    body = {"name": "ext", "type": "external", "uplink": "eth9", "subnets": [{"cidr": "203.0.113.0/24"}]}
    return await post(client, "networks", body)


async def tenant(client: httpx.AsyncClient, name: str, cidr: str, project: str = "default") -> dict[str, Any]:
    return await post(client, "networks", {"name": name, "subnets": [{"cidr": cidr}]}, project=project)


async def instance_on(
    client: httpx.AsyncClient, network: str, name: str, project: str = "default"
) -> dict[str, Any]:
    body = {"image": "busybox", "name": name, "networks": [{"network": network}]}
    return await post(client, "instances", body, project=project)


def counts(ctl: Controller) -> tuple[int, int]:
    with ctl.sessions() as s:
        ports = s.scalar(select(func.count()).select_from(PortRow))
        allocs = s.scalar(select(func.count()).select_from(IpAllocationRow))
        return int(ports or 0), int(allocs or 0)


async def test_external_networks_are_the_admins_and_shared(client: httpx.AsyncClient) -> None:
    ext = await ext_network(client)
    assert ext["type"] == "external" and ext["uplink"] == "eth9"
    err = error_of(
        await client.post(
            f"{P}/networks", json={"name": "e2", "type": "external", "subnets": [{"cidr": "198.51.100.0/24"}]}
        ),
        400,
    )
    assert err["message"].startswith("uplink: an external network needs")
    err = error_of(await client.post(f"{P}/networks", json={"name": "b", "uplink": "eth1"}), 400)
    assert err["message"] == "uplink: only external networks have an uplink"
    err = error_of(
        await client.post(
            f"{P}/networks",
            json={
                "name": "e3",
                "type": "external",
                "uplink": "eth9",
                "subnets": [{"cidr": "198.51.100.0/24"}],
            },
        ),
        409,
    )
    assert err["message"] == "uplink: eth9 is already the uplink of network ext"
    resp = await client.post("/v1/projects", json={"name": "blue"})
    assert resp.status_code == 201
    err = error_of(
        await client.post(
            "/v1/projects/blue/networks",
            json={
                "name": "e",
                "type": "external",
                "uplink": "eth8",
                "subnets": [{"cidr": "198.51.100.0/24"}],
            },
        ),
        400,
    )
    assert err["message"].startswith("type: external networks are made by the administrator")
    # Instances never get a port on it, not even in the admin's project.
    resp = await client.post(f"{P}/instances", json={"image": "busybox", "networks": [{"network": "ext"}]})
    assert error_of(resp, 400)["message"].startswith("networks[0].network: ext is an external network")
    # Every project sees it (read only), and uses it by name for a router's gateway.
    assert [n["name"] for n in (await client.get("/v1/projects/blue/networks")).json()] == ["ext"]
    assert (await client.get("/v1/projects/blue/networks/ext")).json()["id"] == ext["id"]
    assert error_of(await client.delete("/v1/projects/blue/networks/ext"), 404)
    router = await post(client, "routers", {"name": "r", "external_gateway": "ext"}, project="blue")
    assert router["external_gateway"]["network"] == ext["id"]
    assert router["external_gateway"]["ip"] == "203.0.113.2" and router["external_gateway"]["snat"] is True


async def test_router_joins_subnets_with_their_gateways(
    client: httpx.AsyncClient, agent: FakeAgent, ctl: Controller
) -> None:
    a = await tenant(client, "a", "10.1.0.0/24")
    await tenant(client, "b", "10.2.0.0/24")
    router = await post(client, "routers", {"name": "r"})
    assert router["interfaces"] == [] and router["external_gateway"] is None
    router = await post(client, "routers/r/interfaces", {"subnet": a["subnets"][0]["id"]}, status=200)
    router = await post(client, "routers/r/interfaces", {"subnet": "10.2.0.0_24"}, status=200)
    assert [(i["ip"]) for i in router["interfaces"]] == ["10.1.0.1", "10.2.0.1"]
    # The host was told, and got the router with one leg per subnet, each holding the gateway.
    assert [leg.ip for leg in agent.routers[0].interfaces] == ["10.1.0.1", "10.2.0.1"]
    assert agent.routers[0].gateway is None
    # The gateway address is held: no instance gets it, and the subnet and network stay while joined.
    err = error_of(await client.delete(f"{P}/networks/a"), 409)
    assert (
        err["message"]
        == "network a is joined to router(s) r (project default): remove the router interface first"
    )
    assert error_of(await client.delete(f"{P}/subnets/10.1.0.0_24"), 409)["message"].startswith(
        "subnet 10.1.0.0_24 is joined to router(s) r"
    )
    assert (
        error_of(await client.delete(f"{P}/routers/r"), 409)["message"]
        == "router r has interfaces on 10.1.0.0/24, 10.2.0.0/24: remove them first"
    )
    # Static routes must go through a neighbour.
    resp = await client.patch(
        f"{P}/routers/r", json={"routes": [{"destination": "10.9.0.0/16", "nexthop": "10.3.0.7"}]}
    )
    assert error_of(resp, 400)["message"].startswith("routes[0].nexthop: 10.3.0.7 is not a neighbour")
    resp = await client.patch(
        f"{P}/routers/r", json={"routes": [{"destination": "10.9.0.0/16", "nexthop": "10.1.0.7"}]}
    )
    assert resp.status_code == 200 and resp.json()["routes"] == [
        {"destination": "10.9.0.0/16", "nexthop": "10.1.0.7"}
    ]
    assert agent.routers[0].routes[0].nexthop == "10.1.0.7"
    assert error_of(
        await client.delete(f"{P}/routers/r/interfaces/10.1.0.0_24"),
        409,
    )["message"].startswith("subnet: static route(s) 10.9.0.0/16")
    await client.patch(f"{P}/routers/r", json={"routes": []})
    for subnet in ("10.1.0.0_24", "10.2.0.0_24"):
        assert (await client.delete(f"{P}/routers/r/interfaces/{subnet}")).status_code == 200
    assert (await client.delete(f"{P}/routers/r")).status_code == 204
    assert agent.routers == [] and counts(ctl) == (0, 0)
    assert (await client.delete(f"{P}/networks/a")).status_code == 204


async def test_bad_interfaces_leave_nothing(client: httpx.AsyncClient, ctl: Controller) -> None:
    await tenant(client, "a", "10.1.0.0/24")
    await tenant(client, "overlap", "10.1.0.0/25")
    await post(client, "networks", {"name": "nogw", "subnets": [{"cidr": "10.5.0.0/24", "no_gateway": True}]})
    await client.post("/v1/projects", json={"name": "blue"})
    await tenant(client, "theirs", "10.7.0.0/24", project="blue")
    await post(client, "routers", {"name": "r"})
    await post(client, "routers/r/interfaces", {"subnet": "10.1.0.0_24"}, status=200)
    before = counts(ctl)
    cases = [
        ({"subnet": "10.1.0.0_25"}, 400, "subnet: 10.1.0.0/25 overlaps 10.1.0.0/24, already on router r"),
        ({"subnet": "10.5.0.0_24"}, 400, "subnet: 10.5.0.0_24 (10.5.0.0/24) has no gateway"),
        ({"subnet": "10.7.0.0_24"}, 404, "subnet: subnet '10.7.0.0_24' not found"),
        ({"subnet": "10.1.0.0_24"}, 409, "subnet: 10.1.0.0_24 is already joined to router r"),
    ]
    for body, status, message in cases:
        err = error_of(await client.post(f"{P}/routers/r/interfaces", json=body), status)
        assert err["message"].startswith(message), err["message"]
    resp = await client.post(f"{P}/routers", json={"name": "r2", "external_gateway": "nope"})
    assert error_of(resp, 404)["message"] == "external_gateway: external network 'nope' not found"
    resp = await client.post(f"{P}/routers", json={"name": "r3", "external_gateway": "a"})
    assert error_of(resp, 400)["message"] == "external_gateway: network a is not an external network"
    assert counts(ctl) == before
    assert [r["name"] for r in (await client.get(f"{P}/routers")).json()] == ["r"]


async def test_floating_ips(client: httpx.AsyncClient, agent: FakeAgent, ctl: Controller) -> None:
    await ext_network(client)
    await tenant(client, "a", "10.1.0.0/24")
    await tenant(client, "lonely", "10.4.0.0/24")
    await post(client, "routers", {"name": "r", "external_gateway": "ext"})
    await post(client, "routers/r/interfaces", {"subnet": "10.1.0.0_24"}, status=200)
    one = await instance_on(client, "a", "one")
    two = await instance_on(client, "a", "two")
    alone = await instance_on(client, "lonely", "alone")
    fip = await post(client, "floatingips", {"network": "ext", "ip": "203.0.113.50"})
    assert fip["ip"] == "203.0.113.50" and fip["port"] is None
    fip = await post(client, f"floatingips/{fip['id']}/associate", {"port": "one"}, status=200)
    assert fip["fixed_ip"] == one["networks"][0]["ip"] and fip["instance"] == one["id"]
    gw = agent.routers[0].gateway
    assert gw is not None and gw.leg.uplink == "eth9" and gw.nexthop == "203.0.113.1"
    assert [(m.floating_ip, m.fixed_ip) for m in gw.floating] == [("203.0.113.50", "10.1.0.2")]
    # Moving it: associate again.
    fip = await post(
        client, "floatingips/203.0.113.50/associate", {"port": two["networks"][0]["port"]}, status=200
    )
    assert agent.routers[0].gateway and agent.routers[0].gateway.floating[0].fixed_ip == "10.1.0.3"
    # A port no router with a gateway on ext reaches: refused, and the association is unchanged.
    before = counts(ctl)
    err = error_of(await client.post(f"{P}/floatingips/203.0.113.50/associate", json={"port": "alone"}), 400)
    assert err["message"].startswith("port: no router joins the subnet of alone")
    assert (await client.get(f"{P}/floatingips/203.0.113.50")).json()["instance"] == two["id"]
    # Another project can neither see this one nor use its ports.
    await client.post("/v1/projects", json={"name": "blue"})
    assert error_of(await client.get(f"/v1/projects/blue/floatingips/{fip['id']}"), 404)
    theirs = await post(client, "floatingips", {"network": "ext"}, project="blue")
    resp = await client.post(
        f"/v1/projects/blue/floatingips/{theirs['id']}/associate", json={"port": one["networks"][0]["port"]}
    )
    assert (
        error_of(resp, 404)["message"] == f"port: port or instance {one['networks'][0]['port']!r} not found"
    )
    resp = await client.post(f"{P}/floatingips", json={"network": "ext", "ip": "203.0.113.50"})
    assert error_of(resp, 409)["message"] == "ip: 203.0.113.50 is already in use on network ext"
    resp = await client.post(f"{P}/floatingips", json={"network": "ext", "ip": "198.51.100.1"})
    assert error_of(resp, 400)["message"] == "ip: 198.51.100.1 is not in a subnet of network ext"
    assert counts(ctl)[0] == before[0] + 1  # only blue's floating IP
    # The router's interface and gateway stay while they carry it.
    resp = await client.delete(f"{P}/routers/r/interfaces/10.1.0.0_24")
    assert error_of(resp, 409)["message"].startswith("subnet: floating IP(s) 203.0.113.50 reach 10.1.0.0/24")
    resp = await client.patch(f"{P}/routers/r", json={"external_gateway": None})
    assert error_of(resp, 409)["message"].startswith(
        "external_gateway: router r carries floating IP(s) 203.0.113.50"
    )
    assert error_of(await client.delete(f"{P}/networks/ext"), 409)
    # Removing the instance disassociates it.
    assert (await client.delete(f"{P}/instances/two", params={"force": "true"})).status_code == 204
    assert (await client.get(f"{P}/floatingips/203.0.113.50")).json()["port"] is None
    assert agent.routers[0].gateway and agent.routers[0].gateway.floating == []  # the host was told
    await client.post(f"{P}/floatingips/203.0.113.50/disassociate")
    assert (await client.delete(f"{P}/floatingips/203.0.113.50")).status_code == 204
    assert (await client.delete(f"/v1/projects/blue/floatingips/{theirs['id']}")).status_code == 204
    resp = await client.patch(f"{P}/routers/r", json={"external_gateway": None})
    assert resp.status_code == 200 and resp.json()["external_gateway"] is None
    assert alone and (await client.delete(f"{P}/networks/ext")).status_code == 204


async def test_an_auto_removed_instance_leaves_routers_and_groups_at_once(
    client: httpx.AsyncClient, agent: FakeAgent
) -> None:
    """``--rm``: when the instance exits and goes, its floating IP's NAT and its place in its groups go
    from the hosts at once, as with a removal by the API (its address is handed out again at once)."""
    await ext_network(client)
    await tenant(client, "a", "10.1.0.0/24")
    await post(client, "routers", {"name": "r", "external_gateway": "ext"})
    await post(client, "routers/r/interfaces", {"subnet": "10.1.0.0_24"}, status=200)
    job = await run_instance(client, name="job", auto_remove=True, networks=[{"network": "a"}])
    fip = await post(client, "floatingips", {"network": "ext", "ip": "203.0.113.50"})
    await post(client, f"floatingips/{fip['id']}/associate", {"port": "job"}, status=200)
    gateway = agent.routers[0].gateway
    assert gateway is not None and [m.fixed_ip for m in gateway.floating] == ["10.1.0.2"]
    assert any(p.ip == "10.1.0.2" for p in agent.policies[-1].ports)
    policies = len(agent.policies)
    assert await agent.exit(job["id"], 0) is None
    error_of(await client.get(f"{P}/instances/job"), 404)
    gateway = agent.routers[0].gateway
    assert gateway is not None and gateway.floating == []  # the router's host was told
    assert len(agent.policies) > policies and not any(p.ip == "10.1.0.2" for p in agent.policies[-1].ports)
