"""Overlay networks on the controller: VNIs, MTUs, the forwarding state of each host (three hosts),
the nudge to other hosts, and host CIDR collisions. Real API and SQLite, fake host agents."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from atoll.model.overlay import HostCidr, HostNetworkReport
from atoll.services.addrpools import parse_pools
from atoll.services.context import Controller
from atoll.services.control import LocalControlPlane
from atoll.services.hosts import register_host
from atoll.store.models import InstanceRow
from atoll.store.overlaynet import OverlaySegmentRow

from .factories import P, create_instance, error_of, import_image
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


# -- through the API -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def busybox(client: httpx.AsyncClient) -> dict[str, Any]:
    return await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])


@pytest.fixture
def plane(ctl: Controller) -> LocalControlPlane:
    return LocalControlPlane(ctl)


@pytest.fixture
def others(ctl: Controller) -> list[FakeAgent]:
    """Two more hosts, connected to the same controller."""
    agents = [FakeAgent(host=f"host-{i}") for i in (2, 3)]
    for agent in agents:
        register_host(ctl, agent, name=agent.host, runtime="fake", cgroup_version=2)
    return agents


async def network(client: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
    body.setdefault("subnets", [{"cidr": "10.0.0.0/24"}])
    resp = await client.post(f"{P}/networks", json={"name": name, **body})
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


def vni_of(ctl: Controller, network_id: str) -> int | None:
    with ctl.sessions() as s:
        return s.scalar(select(OverlaySegmentRow.vni).where(OverlaySegmentRow.network_id == network_id))


def move(ctl: Controller, instance_id: str, host_id: str) -> None:
    """Place an instance on another host, as the scheduler of a cluster will (issue 6)."""
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, instance_id)
        assert row is not None
        row.host_id = host_id


async def test_overlay_is_the_default_with_a_unique_vni(client: httpx.AsyncClient, ctl: Controller) -> None:
    nets = [await network(client, f"n{i}") for i in range(5)]
    assert {n["type"] for n in nets} == {"overlay"}
    vnis = [vni_of(ctl, n["id"]) for n in nets]
    assert all(v is not None and 0 < v < 1 << 24 for v in vnis) and len(set(vnis)) == 5
    bridge = await network(client, "b", type="bridge")
    assert bridge["mtu"] == 1500 and vni_of(ctl, bridge["id"]) is None
    assert (await client.delete(f"{P}/networks/n0")).status_code == 204
    assert vni_of(ctl, nets[0]["id"]) is None  # the segment goes with its network


async def test_overlay_mtu_follows_the_smallest_underlay(
    client: httpx.AsyncClient, plane: LocalControlPlane, others: list[FakeAgent]
) -> None:
    await plane.report_host_network("host-1", HostNetworkReport("192.168.9.1", 9000))
    await plane.report_host_network("host-2", HostNetworkReport("192.168.9.2", 1400))
    assert (await network(client, "a"))["mtu"] == 1350
    assert (await network(client, "b", mtu=1300))["mtu"] == 1300
    err = error_of(await client.post(f"{P}/networks", json={"name": "c", "mtu": 1400}), 400)
    assert err["message"].startswith("mtu: 1400 is too large for an overlay network: at most 1350")
    assert (await network(client, "d", type="bridge", mtu=9000))["mtu"] == 9000  # host-local


async def test_each_host_learns_the_remote_ports(
    client: httpx.AsyncClient, ctl: Controller, plane: LocalControlPlane, others: list[FakeAgent]
) -> None:
    for i, host in enumerate(["host-1", "host-2", "host-3"], start=1):
        await plane.report_host_network(host, HostNetworkReport(f"192.168.9.{i}"))
    net = await network(client, "web")
    await network(client, "local", type="bridge", subnets=[{"cidr": "10.9.0.0/24"}])
    a = await create_instance(client, networks=[{"network": "web"}, {"network": "local"}])
    b = await create_instance(client, networks=[{"network": "web"}])
    c = await create_instance(client, networks=[{"network": "web"}])
    move(ctl, b["id"], "host-2")
    move(ctl, c["id"], "host-2")
    mac = {i["id"]: i["networks"][0]["mac"] for i in (a, b, c)}

    (h1,) = await plane.overlay_networks("host-1")
    assert (h1.network_id, h1.vni, h1.mtu) == (net["id"], vni_of(ctl, net["id"]), 1450)
    assert h1.peers == ["192.168.9.2"]
    assert {(r.mac, r.ip, r.host_id, r.underlay) for r in h1.remote_ports} == {
        (mac[b["id"]], "10.0.0.3", "host-2", "192.168.9.2"),
        (mac[c["id"]], "10.0.0.4", "host-2", "192.168.9.2"),
    }
    (h2,) = await plane.overlay_networks("host-2")
    assert h2.peers == ["192.168.9.1"] and [r.ip for r in h2.remote_ports] == ["10.0.0.2"]
    assert await plane.overlay_networks("host-3") == []  # no port there

    # c moves to host-3 and keeps its address: the others now send its frames there.
    move(ctl, c["id"], "host-3")
    (h1,) = await plane.overlay_networks("host-1")
    assert h1.peers == ["192.168.9.2", "192.168.9.3"]
    assert {(r.ip, r.underlay) for r in h1.remote_ports} == {
        ("10.0.0.3", "192.168.9.2"),
        ("10.0.0.4", "192.168.9.3"),
    }

    # Removing b: host-1 stops sending to host-2.
    assert (await client.delete(f"{P}/instances/{b['id']}", params={"force": "true"})).status_code == 204
    (h1,) = await plane.overlay_networks("host-1")
    assert h1.peers == ["192.168.9.3"] and [r.ip for r in h1.remote_ports] == ["10.0.0.4"]


async def test_other_hosts_are_nudged(
    client: httpx.AsyncClient, agent: FakeAgent, others: list[FakeAgent]
) -> None:
    await network(client, "web")
    inst = await create_instance(client, networks=[{"network": "web"}])
    assert [len(o.called("refresh_overlay")) for o in others] == [1, 1]
    assert agent.called("refresh_overlay") == []  # its own host wires itself as it creates the instance
    await create_instance(client)  # no ports: nobody else cares
    assert [len(o.called("refresh_overlay")) for o in others] == [1, 1]
    others[0].fail["refresh_overlay"] = RuntimeError("unreachable")  # a host that does not answer
    assert (await client.delete(f"{P}/instances/{inst['id']}", params={"force": "true"})).status_code == 204
    assert [len(o.called("refresh_overlay")) for o in others] == [2, 2]


# -- host CIDR collisions --------------------------------------------------------------------------


async def test_cidrs_of_the_hosts_are_refused(
    client: httpx.AsyncClient, plane: LocalControlPlane, others: list[FakeAgent]
) -> None:
    await plane.report_host_network(
        "host-1", HostNetworkReport("192.168.9.1", cidrs=[HostCidr("eth0", "192.168.9.0/24")])
    )
    await plane.report_host_network(
        "host-2", HostNetworkReport("192.168.9.2", cidrs=[HostCidr("docker0", "172.17.0.0/16")])
    )
    body = {"name": "n", "subnets": [{"cidr": "10.0.0.0/24"}, {"cidr": "172.17.5.0/24"}]}
    err = error_of(await client.post(f"{P}/networks", json=body), 400)
    assert err["message"] == (
        "subnets[1].cidr: 172.17.5.0/24 overlaps 172.17.0.0/16 of the host's interface docker0 "
        "on host host-2: choose another range"
    )
    assert (await client.get(f"{P}/networks")).json() == []  # nothing half-made
    err = error_of(
        await client.post(f"{P}/networks", json={"name": "n", "subnets": [{"cidr": "192.168.0.0/16"}]}), 400
    )
    assert err["message"].startswith(
        "subnets[0].cidr: 192.168.0.0/16 overlaps 192.168.9.0/24 of the host's interface eth0"
    )
    await network(client, "n")  # 10.0.0.0/24 is free
    err = error_of(await client.post(f"{P}/subnets", json={"network": "n", "cidr": "192.168.9.128/25"}), 400)
    assert err["message"].startswith(
        "cidr: 192.168.9.128/25 overlaps 192.168.9.0/24 of the host's interface eth0"
    )
    assert len((await client.get(f"{P}/subnets")).json()) == 1
    # A later report replaces the earlier one: the host left that network.
    await plane.report_host_network("host-1", HostNetworkReport("192.168.9.1"))
    resp = await client.post(f"{P}/subnets", json={"network": "n", "cidr": "192.168.9.128/25"})
    assert resp.status_code == 201, resp.text


async def test_reports_of_unknown_hosts_are_ignored(
    client: httpx.AsyncClient, plane: LocalControlPlane
) -> None:
    await plane.report_host_network(
        "nobody", HostNetworkReport("1.2.3.4", cidrs=[HostCidr("eth0", "10.0.0.0/8")])
    )
    await network(client, "n")


async def test_auto_subnets_avoid_the_hosts_and_the_project(
    client: httpx.AsyncClient, ctl: Controller, plane: LocalControlPlane
) -> None:
    ctl.address_pools = parse_pools("10.96.0.0/22:24")
    report = HostNetworkReport("10.96.0.5", cidrs=[HostCidr("eth0", "10.96.0.0/24")])
    await plane.report_host_network("host-1", report)
    net = await network(client, "a", subnets=[{"cidr": "10.96.1.0/24"}, {"cidr": "auto"}, {"cidr": "auto"}])
    assert [s["cidr"] for s in net["subnets"]] == ["10.96.1.0/24", "10.96.2.0/24", "10.96.3.0/24"]
    err = error_of(await client.post(f"{P}/subnets", json={"network": "a", "cidr": "auto"}), 409)
    assert err["message"] == "cidr: no free block left in the default address pools (10.96.0.0/22:24)"
    # Another project has its own address space: only the host's network is skipped there.
    assert (await client.post("/v1/projects", json={"name": "other"})).status_code == 201
    resp = await client.post("/v1/projects/other/networks", json={"name": "b", "subnets": [{"cidr": "auto"}]})
    assert resp.status_code == 201, resp.text
    assert resp.json()["subnets"][0]["cidr"] == "10.96.1.0/24"
