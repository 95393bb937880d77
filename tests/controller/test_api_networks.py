"""Networks, subnets and ports through the real API and SQLite, with a fake host agent."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from atoll.model.errors import RuntimeFailure
from atoll.services import netports
from atoll.services.context import Controller
from atoll.store.models import IpAllocationRow, PortRow

from .factories import P, error_of, import_image
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
async def busybox(client: httpx.AsyncClient) -> dict[str, Any]:
    return await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])


async def create_network(
    client: httpx.AsyncClient, name: str = "net1", *, project: str = "default", **body: Any
) -> dict[str, Any]:
    body.setdefault("subnets", [{"cidr": "10.0.0.0/24"}])
    resp = await client.post(f"/v1/projects/{project}/networks", json={"name": name, **body})
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def create_instance(
    client: httpx.AsyncClient, *, project: str = "default", **body: Any
) -> httpx.Response:
    return await client.post(f"/v1/projects/{project}/instances", json={"image": "busybox", **body})


async def nic_of(client: httpx.AsyncClient, network: str = "net1", **extra: Any) -> dict[str, Any]:
    resp = await create_instance(client, networks=[{"network": network, **extra}])
    assert resp.status_code == 201, resp.text
    nics: list[dict[str, Any]] = resp.json()["networks"]
    assert len(nics) == 1
    return nics[0]


async def test_create_inspect_list(client: httpx.AsyncClient) -> None:
    net = await create_network(
        client,
        subnets=[
            {"cidr": "10.0.0.0/24", "dns_nameservers": ["9.9.9.9"]},
            {"cidr": "10.0.1.0/24", "name": "b"},
        ],
        labels={"tier": "web"},
    )
    assert re.fullmatch(r"[0-9a-f]{64}", net["id"])
    # Overlay is the default type; its MTU leaves room for VXLAN within the (default 1500) underlay.
    assert net["type"] == "overlay" and net["mtu"] == 1450 and net["labels"] == {"tier": "web"}
    first, second = net["subnets"]
    assert (
        first["cidr"] == "10.0.0.0/24" and first["gateway"] == "10.0.0.1" and first["name"] == "10.0.0.0_24"
    )
    assert first["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert first["dns_nameservers"] == ["9.9.9.9"] and first["network"] == net["id"]
    assert second["name"] == "b"
    for ref in ("net1", net["id"], net["id"][:6]):
        resp = await client.get(f"{P}/networks/{ref}")
        assert resp.status_code == 200 and resp.json() == net
    assert (await client.get(f"{P}/networks")).json() == [net]
    subnets = (await client.get(f"{P}/subnets", params={"network": "net1"})).json()
    assert [s["cidr"] for s in subnets] == ["10.0.0.0/24", "10.0.1.0/24"]
    assert (await client.get(f"{P}/subnets/b")).json()["cidr"] == "10.0.1.0/24"


@pytest.mark.parametrize("kind", ["flat"])
async def test_later_types_are_refused_for_now(client: httpx.AsyncClient, kind: str) -> None:
    err = error_of(await client.post(f"{P}/networks", json={"name": "n", "type": kind}), 400)
    assert err["message"] == f"type: '{kind}' networks are not supported yet: use 'external'"
    assert (await client.get(f"{P}/networks")).json() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "vlan"}, "type: unknown network type 'vlan'"),
        ({"subnets": [{"cidr": "10.0.0.0/8x"}]}, "subnets[0].cidr: '10.0.0.0/8x' is not a CIDR"),
        (
            {"subnets": [{"cidr": "10.0.0.0/24", "gateway": "10.9.9.9"}]},
            "subnets[0].gateway: the gateway 10.9.9.9 is outside the subnet 10.0.0.0/24",
        ),
        (
            {"subnets": [{"cidr": "10.0.0.0/24"}, {"cidr": "10.0.0.128/25"}]},
            "subnets[1].cidr: 10.0.0.128/25 overlaps subnets[0] (10.0.0.0/24)",
        ),
        (
            {
                "subnets": [
                    {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.9", "end": "10.0.0.2"}]}
                ]
            },
            "subnets[0].allocation_pools[0]: the start 10.0.0.9 is after the end 10.0.0.2",
        ),
        ({"mtu": 100}, "mtu: Input should be greater than or equal to 576"),
        ({"name": "bad name"}, "name: String should match pattern"),
    ],
)
async def test_bad_networks_name_the_field_and_make_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    err = error_of(await client.post(f"{P}/networks", json={"name": "n", **body}), 400)
    assert err["message"].startswith(message), err["message"]
    assert (await client.get(f"{P}/networks")).json() == []
    assert (await client.get(f"{P}/subnets")).json() == []


async def test_names_are_unique_per_project(client: httpx.AsyncClient) -> None:
    await create_network(client)
    err = error_of(await client.post(f"{P}/networks", json={"name": "net1"}), 409)
    assert err["message"].startswith("name: network 'net1' already exists")


async def test_projects_never_see_each_others_networks(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/projects", json={"name": "other"})).status_code == 201
    mine = await create_network(client)
    theirs = await create_network(client, project="other")  # same name, same CIDR: fine
    assert theirs["subnets"][0]["cidr"] == mine["subnets"][0]["cidr"]
    assert [n["id"] for n in (await client.get("/v1/projects/other/networks")).json()] == [theirs["id"]]
    for ref in (mine["id"], mine["id"][:8], mine["subnets"][0]["id"]):
        assert (await client.get(f"/v1/projects/other/networks/{ref}")).status_code == 404
    assert (await client.get(f"/v1/projects/other/subnets/{mine['subnets'][0]['id']}")).status_code == 404
    assert (await client.delete(f"/v1/projects/other/networks/{mine['id']}")).status_code == 404
    # An instance of "other" cannot join "default"'s network by id.
    await import_image(client, 1, project="other", tags=["busybox:latest"])
    resp = await create_instance(client, project="other", networks=[{"network": mine["id"]}])
    assert error_of(resp, 400)["message"].startswith(f"networks[0].network: network '{mine['id']}' not found")


async def test_subnets(client: httpx.AsyncClient) -> None:
    await create_network(client, subnets=[])
    resp = await client.post(
        f"{P}/subnets",
        json={
            "network": "net1",
            "cidr": "192.168.10.0/24",
            "gateway": "192.168.10.254",
            "allocation_pools": [{"start": "192.168.10.100", "end": "192.168.10.199"}],
        },
    )
    assert resp.status_code == 201, resp.text
    sub = resp.json()
    assert sub["gateway"] == "192.168.10.254"
    err = error_of(await client.post(f"{P}/subnets", json={"network": "net1", "cidr": "192.168.0.0/16"}), 400)
    assert (
        err["message"]
        == "cidr: 192.168.0.0/16 overlaps subnet 192.168.10.0_24 (192.168.10.0/24) of network net1"
    )
    err = error_of(await client.post(f"{P}/subnets", json={"network": "nope", "cidr": "10.0.0.0/24"}), 400)
    assert err["message"] == "network: network 'nope' not found"
    resp = await client.post(
        f"{P}/subnets", json={"network": "net1", "cidr": "10.5.0.0/24", "no_gateway": True}
    )
    assert resp.json()["gateway"] is None
    assert (await client.delete(f"{P}/subnets/{sub['id']}")).status_code == 204
    assert [s["cidr"] for s in (await client.get(f"{P}/subnets")).json()] == ["10.5.0.0/24"]


async def test_instances_get_addresses_and_macs(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await create_network(client, subnets=[{"cidr": "10.0.0.0/24", "dns_nameservers": ["10.0.0.53"]}])
    nic = await nic_of(client, aliases=["web"])
    assert nic["ip"] == "10.0.0.2" and nic["prefix_len"] == 24 and nic["gateway"] == "10.0.0.1"
    assert nic["device"] == "eth0" and nic["aliases"] == ["web"]
    assert re.fullmatch(r"02:a7(:[0-9a-f]{2}){4}", nic["mac"])
    spec = agent.called("create_instance")[-1]
    (port,) = spec.ports
    assert (port.ip, port.mac, port.gateway, port.dns, port.mtu) == (
        "10.0.0.2",
        nic["mac"],
        "10.0.0.1",
        ["10.0.0.53"],
        1450,
    )
    assert (await nic_of(client))["ip"] == "10.0.0.3"
    assert (await nic_of(client, ip="10.0.0.77"))["ip"] == "10.0.0.77"
    ports = (await client.get(f"{P}/ports", params={"network": "net1"})).json()
    assert sorted(p["fixed_ips"][0]["ip"] for p in ports) == ["10.0.0.2", "10.0.0.3", "10.0.0.77"]
    one = (await client.get(f"{P}/ports/{nic['port'][:8]}")).json()
    assert one["mac"] == nic["mac"] and one["instance"] == spec.id


async def test_two_networks_two_nics(client: httpx.AsyncClient) -> None:
    await create_network(client, "a")
    await create_network(client, "b", subnets=[{"cidr": "172.20.0.0/16"}])
    resp = await create_instance(client, networks=[{"network": "a"}, {"network": "b", "ip": "172.20.3.4"}])
    assert resp.status_code == 201, resp.text
    nics = resp.json()["networks"]
    assert [(n["device"], n["ip"]) for n in nics] == [("eth0", "10.0.0.2"), ("eth1", "172.20.3.4")]
    inst = (await client.get(f"{P}/instances/{resp.json()['id']}")).json()
    assert inst["networks"] == nics


@pytest.mark.parametrize(
    ("networks", "status", "message"),
    [
        ([{"network": "nope"}], 400, "networks[0].network: network 'nope' not found"),
        ([{"network": "net1", "ip": "10.0.0.300"}], 400, "networks[0].ip: '10.0.0.300' is not an IP address"),
        (
            [{"network": "net1", "ip": "10.0.9.9"}],
            400,
            "networks[0].ip: 10.0.9.9 is not in a subnet of network net1",
        ),
        (
            [{"network": "net1", "ip": "10.0.0.1"}],
            400,
            "networks[0].ip: 10.0.0.1 is the gateway of 10.0.0.0/24",
        ),
        (
            [{"network": "net1", "ip": "10.0.0.250"}],
            400,
            "networks[0].ip: 10.0.0.250 is not inside an allocation pool of 10.0.0.0/24 (10.0.0.2-10.0.0.2",
        ),
        ([{"network": "net1"}, {"network": "net1"}], 400, "networks[1].network: net1 is already networks[0]"),
        ([{"network": "empty"}], 400, "networks[0].network: network empty has no subnet"),
        (
            [{"network": "net1", "aliases": ["-x"]}],
            400,
            "networks[0].aliases[0]: String should match pattern",
        ),
    ],
)
async def test_bad_nics_name_the_field_and_make_nothing(
    client: httpx.AsyncClient, agent: FakeAgent, networks: list[dict[str, Any]], status: int, message: str
) -> None:
    await create_network(
        client,
        subnets=[{"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.200"}]}],
    )
    await create_network(client, "empty", subnets=[])
    err = error_of(await create_instance(client, name="x", networks=networks), status)
    assert err["message"].startswith(message), err["message"]
    assert (await client.get(f"{P}/instances", params={"all": "true"})).json() == []
    assert (await client.get(f"{P}/ports")).json() == []
    assert agent.called("create_instance") == []


async def test_a_taken_address_names_its_holder(client: httpx.AsyncClient) -> None:
    await create_network(client)
    first = await create_instance(client, networks=[{"network": "net1", "ip": "10.0.0.9"}])
    err = error_of(await create_instance(client, networks=[{"network": "net1", "ip": "10.0.0.9"}]), 400)
    assert err["message"] == (
        f"networks[0].ip: 10.0.0.9 is already in use by instance {first.json()['id'][:12]} on network net1"
    )


async def test_an_exhausted_pool(client: httpx.AsyncClient) -> None:
    await create_network(client, subnets=[{"cidr": "10.0.0.0/30"}])  # one address: .2
    await nic_of(client)
    err = error_of(await create_instance(client, networks=[{"network": "net1"}]), 409)
    assert (
        err["message"]
        == "networks[0].network: no free address left on network net1 (10.0.0.0/30: 10.0.0.2-10.0.0.2)"
    )


async def test_removing_an_instance_frees_its_address(client: httpx.AsyncClient) -> None:
    await create_network(client, subnets=[{"cidr": "10.0.0.0/30"}])
    resp = await create_instance(client, networks=[{"network": "net1"}])
    # In use: the network and its subnet stay.
    err = error_of(await client.delete(f"{P}/networks/net1"), 409)
    assert (
        err["message"] == f"network net1 is in use by instance(s) {resp.json()['id'][:12]}: remove them first"
    )
    assert error_of(await client.delete(f"{P}/subnets/10.0.0.0_30"), 409)["message"].startswith(
        "subnet 10.0.0.0_30 has 1 address(es) in use"
    )
    assert (await client.delete(f"{P}/instances/{resp.json()['id']}")).status_code == 204
    assert (await client.get(f"{P}/ports")).json() == []
    assert (await nic_of(client))["ip"] == "10.0.0.2"


async def test_deleting_a_network_deletes_its_subnets(client: httpx.AsyncClient) -> None:
    await create_network(client)
    assert (await client.delete(f"{P}/networks/net1")).status_code == 204
    assert (await client.get(f"{P}/subnets")).json() == []
    assert (await client.get(f"{P}/networks/net1")).status_code == 404


async def test_an_agent_failure_frees_the_addresses(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await create_network(client, subnets=[{"cidr": "10.0.0.0/30"}])
    agent.fail["create_instance"] = RuntimeFailure("the host said no")
    assert (await create_instance(client, networks=[{"network": "net1"}])).status_code == 500
    assert (await client.get(f"{P}/ports")).json() == []
    assert (await nic_of(client))["ip"] == "10.0.0.2"


class SlowAgent(FakeAgent):
    """Yields to the event loop while creating, so concurrent requests interleave there."""

    async def create_instance(self, spec: Any) -> None:
        await asyncio.sleep(0.001)
        await super().create_instance(spec)


@pytest.fixture
def agent() -> FakeAgent:
    return SlowAgent()


async def test_concurrent_requests_never_share_an_address(client: httpx.AsyncClient) -> None:
    await create_network(client, subnets=[{"cidr": "10.0.0.0/27"}])  # 29 addresses
    responses = await asyncio.gather(
        *(create_instance(client, networks=[{"network": "net1"}]) for _ in range(40))
    )
    ok = [r.json()["networks"][0]["ip"] for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(ok) == 29 and len(set(ok)) == 29
    assert all(r.status_code == 409 for r in refused)


async def test_the_database_refuses_a_second_holder(ctl: Controller, client: httpx.AsyncClient) -> None:
    await create_network(client)
    nic = await nic_of(client)
    with ctl.sessions() as s:
        alloc = s.scalar(select(IpAllocationRow))
        assert alloc is not None and alloc.address == nic["ip"]
        port = s.get(PortRow, alloc.port_id)
        assert port is not None
        again = insert(IpAllocationRow).values(
            subnet_id=alloc.subnet_id, address=alloc.address, port_id=port.id
        )
        with pytest.raises(IntegrityError):
            s.execute(again)


async def test_a_race_lost_in_the_database_is_run_again(
    client: httpx.AsyncClient, ctl: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another controller took the address between our read and our write: the unique key refuses ours,
    and the whole transaction runs again with a fresh view."""
    await create_network(client)
    await nic_of(client)  # 10.0.0.2
    real = netports.used_addresses
    stale: Iterator[set[IPv4Address]] = iter(
        [set()]
    )  # the first read misses 10.0.0.2, as if it were committed just after it

    def used(s: Any, subnet_id: str) -> Any:
        return next(stale, None) or real(s, subnet_id)

    monkeypatch.setattr(netports, "used_addresses", used)
    assert (await nic_of(client))["ip"] == "10.0.0.3"
    with ctl.sessions() as s:
        assert sorted(s.scalars(select(IpAllocationRow.address))) == ["10.0.0.2", "10.0.0.3"]
