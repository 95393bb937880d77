"""Hot-plugged NICs (connect/disconnect) through the real API and SQLite, with a fake host agent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from atoll.model.errors import RuntimeFailure
from atoll.services.context import Controller
from atoll.store.models import IpAllocationRow, PortRow

from .factories import P, error_of, import_image
from .fakes import FakeAgent
from .test_api_networks import create_instance, create_network

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
async def busybox(client: httpx.AsyncClient) -> dict[str, Any]:
    return await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])


async def instance(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await create_instance(client, name="app", **body)
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def connect(client: httpx.AsyncClient, ref: str = "app", **body: Any) -> httpx.Response:
    return await client.post(f"{P}/instances/{ref}/networks", json=body)


def allocations(ctl: Controller) -> list[str]:
    with ctl.sessions() as s:
        return sorted(s.scalars(select(IpAllocationRow.address)))


async def test_connect_and_disconnect(client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent) -> None:
    a = await create_network(client, "a", subnets=[{"cidr": "10.0.0.0/24"}])
    b = await create_network(client, "b", subnets=[{"cidr": "10.1.0.0/24"}])
    await instance(client, networks=[{"network": "a"}])
    resp = await connect(client, network="b", ip="10.1.0.7", aliases=["db"], mac="02:42:AC:11:00:02")
    assert resp.status_code == 200, resp.text
    nics = resp.json()["networks"]
    assert [(n["network"], n["device"], n["ip"], n["aliases"]) for n in nics] == [
        (a["id"], "eth0", "10.0.0.2", []),
        (b["id"], "eth1", "10.1.0.7", ["db"]),
    ]
    assert nics[1]["mac"] == "02:42:ac:11:00:02" and nics[1]["ip_requested"]
    replugged = [arg for name, arg in agent.calls if name == "replug_instance"]
    assert [p.device for p in replugged[-1].ports] == ["eth0", "eth1"]
    # The spec is stored: inspect, ports and a later start see the new NIC.
    assert (await client.get(f"{P}/instances/app")).json()["networks"] == nics
    ports = (await client.get(f"{P}/ports", params={"instance": "app"})).json()
    assert sorted(p["device"] for p in ports) == ["eth0", "eth1"]
    assert allocations(ctl) == ["10.0.0.2", "10.1.0.7"]

    resp = await client.delete(f"{P}/instances/app/networks/a")
    assert resp.status_code == 200, resp.text
    assert [n["device"] for n in resp.json()["networks"]] == ["eth1"]
    assert allocations(ctl) == ["10.1.0.7"]  # the address is released
    # The lowest free device is taken again.
    resp = await connect(client, network="a")
    assert [n["device"] for n in resp.json()["networks"]] == ["eth1", "eth0"]


async def test_connect_an_instance_without_networks(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await create_network(client, "a")
    await instance(client)
    resp = await connect(client, network="a")
    assert resp.status_code == 200, resp.text
    assert [n["device"] for n in resp.json()["networks"]] == ["eth0"]
    # The port joined the project's default security group, as at create.
    port = (await client.get(f"{P}/ports", params={"instance": "app"})).json()[0]
    assert len(port["security_groups"]) == 1


async def test_bad_input_changes_nothing(client: httpx.AsyncClient, ctl: Controller) -> None:
    await create_network(client, "a", subnets=[{"cidr": "10.0.0.0/24"}])
    await create_network(client, "b", subnets=[{"cidr": "10.1.0.0/24"}])
    await instance(client, networks=[{"network": "a"}])
    await create_instance(client, name="other", networks=[{"network": "b", "ip": "10.1.0.9"}])
    before = allocations(ctl)

    err = error_of(await connect(client, network="nope"), 404)
    assert err["message"].startswith("network: ") and "nope" in err["message"]
    err = error_of(await connect(client, network="a"), 409)
    assert err["message"] == "network: instance app is already connected to network a"
    err = error_of(await connect(client, network="b", ip="10.2.0.5"), 400)
    assert err["message"].startswith("ip: 10.2.0.5 is not in a subnet of network b")
    err = error_of(await connect(client, network="b", ip="10.1.0.9"), 400)
    assert err["message"].startswith("ip: 10.1.0.9 is already in use by instance")
    err = error_of(await connect(client, network="b", ip="banana"), 400)
    assert err["message"].startswith("ip: ")
    err = error_of(await connect(client, network="b", mac="03:00:00:00:00:01"), 400)
    assert err["message"].startswith("mac: 03:00:00:00:00:01 is a multicast address")
    theirs_mac = (await client.get(f"{P}/instances/other")).json()["networks"][0]["mac"]
    err = error_of(await connect(client, network="b", mac=theirs_mac.upper()), 400)
    assert err["message"].startswith(f"mac: {theirs_mac} is already in use by instance")
    err = error_of(await connect(client, network="b", mac="zz"), 400)
    assert err["message"].startswith("mac")
    err = error_of(await connect(client, "ghost", network="b"), 404)
    err = error_of(await client.delete(f"{P}/instances/app/networks/b"), 404)
    assert err["message"] == "network: instance app is not connected to network b"

    # Another project's network is "not found", even by id.
    assert (await client.post("/v1/projects", json={"name": "other"})).status_code == 201
    theirs = await create_network(client, "c", project="other", subnets=[{"cidr": "10.5.0.0/24"}])
    err = error_of(await connect(client, network=theirs["id"]), 404)
    assert err["message"].startswith("network: ")

    assert allocations(ctl) == before
    nics = (await client.get(f"{P}/instances/app")).json()["networks"]
    assert [n["device"] for n in nics] == ["eth0"]


async def test_a_refusing_host_leaves_nothing(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    await create_network(client, "a")
    await create_network(client, "b", subnets=[{"cidr": "10.1.0.0/24"}])
    await instance(client, networks=[{"network": "a"}])
    before = allocations(ctl)
    agent.fail["replug_instance"] = RuntimeFailure("veth: no such device")
    err = error_of(await connect(client, network="b"), 500)
    assert "veth" in err["message"]
    assert allocations(ctl) == before
    with ctl.sessions() as s:
        assert [p.device for p in s.scalars(select(PortRow))] == ["eth0"]
    view = (await client.get(f"{P}/instances/app")).json()
    assert [n["device"] for n in view["networks"]] == ["eth0"]
    # The host was told the old spec again.
    assert [p.device for p in agent.specs[view["id"]].ports] == ["eth0"]
