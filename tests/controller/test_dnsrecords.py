"""The names the controller hands to hosts: the pure computation, and the records of real rows made
through the API (SQLite, a fake host agent), including the nudges after each change."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.model.dnsrecords import NameRecord, NetworkNames
from atoll.services.context import Controller
from atoll.services.control import LocalControlPlane
from atoll.services.dnsrecords import PortName, compute, dns_name
from atoll.services.hosts import register_host
from atoll.store.models import InstanceRow

from .factories import error_of, import_image
from .fakes import FakeAgent

NET_A, NET_B = "a" * 64, "b" * 64
ID_1, ID_2 = "1" * 64, "2" * 64


def test_dns_name() -> None:
    assert dns_name("Web.") == "web"
    assert dns_name("cool_name") == "cool_name"
    assert dns_name("a" * 63) == "a" * 63
    assert dns_name("a" * 64) is None  # a label has at most 63 characters
    assert dns_name("a..b") is None
    assert dns_name("") is None


def test_compute_groups_names_by_network() -> None:
    ports = [
        PortName(NET_A, ID_1, "web", ("www", "WEB"), "10.0.0.2"),
        PortName(NET_B, ID_1, "web", (), "10.1.0.2"),
        PortName(NET_A, ID_2, "db", ("store",), "10.0.0.3"),
        PortName(NET_B, "3" * 64, "x" * 64, (), "10.1.0.9"),  # a valid instance name, not a DNS label
    ]
    out = compute(ports, {NET_A: ["10.0.0.0/24"], NET_B: ["10.1.0.0/24"], "c" * 64: ["10.2.0.0/24"]})
    assert out == [
        NetworkNames(
            NET_A,
            records=[
                NameRecord("db", "10.0.0.3", ID_2, primary=True),
                NameRecord("222222222222", "10.0.0.3", ID_2),
                NameRecord("store", "10.0.0.3", ID_2),
                NameRecord("web", "10.0.0.2", ID_1, primary=True),
                NameRecord("111111111111", "10.0.0.2", ID_1),
                NameRecord("www", "10.0.0.2", ID_1),  # "WEB" is the name again, once
            ],
            cidrs=["10.0.0.0/24"],
        ),
        NetworkNames(
            NET_B,
            records=[
                NameRecord("web", "10.1.0.2", ID_1, primary=True),
                NameRecord("111111111111", "10.1.0.2", ID_1),
                NameRecord("333333333333", "10.1.0.9", "3" * 64),  # still reachable by its short id
            ],
            cidrs=["10.1.0.0/24"],
        ),
        NetworkNames("c" * 64, records=[], cidrs=["10.2.0.0/24"]),
    ]


@pytest.fixture
async def busybox(client: httpx.AsyncClient) -> dict[str, Any]:
    return await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])


async def post(client: httpx.AsyncClient, path: str, project: str = "default", **body: Any) -> Any:
    resp = await client.post(f"/v1/projects/{project}/{path}", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def by_network(names: list[NetworkNames]) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for network in names:
        table = out.setdefault(network.network_id, {})
        for record in network.records:
            table.setdefault(record.name, []).append(record.address)
    return out


@pytest.mark.anyio
@pytest.mark.usefixtures("busybox")
async def test_records_follow_instances(client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent) -> None:
    plane = LocalControlPlane(ctl)
    assert await plane.network_names(agent.host_id) == []
    front = await post(client, "networks", name="front", subnets=[{"cidr": "10.0.0.0/24"}])
    back = await post(client, "networks", name="back", subnets=[{"cidr": "10.1.0.0/24"}])
    await post(client, "networks", name="unused", subnets=[{"cidr": "10.2.0.0/24"}])
    web = await post(
        client,
        "instances",
        image="busybox",
        name="web",
        networks=[{"network": "front", "aliases": ["www"]}, {"network": "back"}],
    )
    assert agent.called("names_changed") == [sorted([front["id"], back["id"]])]
    db = await post(client, "instances", image="busybox", name="db", networks=[{"network": "back"}])
    await post(client, "instances", image="busybox", name="loner")  # no networks: no names
    names = await plane.network_names(agent.host_id)
    assert [n.network_id for n in names] == sorted([front["id"], back["id"]])  # only networks in use
    table = by_network(names)
    assert table[front["id"]] == {"web": ["10.0.0.2"], web["id"][:12]: ["10.0.0.2"], "www": ["10.0.0.2"]}
    assert table[back["id"]] == {
        "db": ["10.1.0.3"],
        db["id"][:12]: ["10.1.0.3"],
        "web": ["10.1.0.2"],
        web["id"][:12]: ["10.1.0.2"],
    }
    assert {n.network_id: n.cidrs for n in names} == {
        front["id"]: ["10.0.0.0/24"],
        back["id"]: ["10.1.0.0/24"],
    }

    resp = await client.delete("/v1/projects/default/instances/web", params={"force": True})
    assert resp.status_code == 204, resp.text
    assert agent.called("names_changed")[-1] == sorted([front["id"], back["id"]])
    table = by_network(await plane.network_names(agent.host_id))
    assert table == {back["id"]: {"db": ["10.1.0.3"], db["id"][:12]: ["10.1.0.3"]}}


@pytest.mark.anyio
@pytest.mark.usefixtures("busybox")
async def test_projects_never_share_names(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    resp = await client.post("/v1/projects", json={"name": "other"})
    assert resp.status_code == 201, resp.text
    await import_image(client, 1, project="other", tags=["busybox:latest"], cmd=["sh"])
    mine = await post(client, "networks", name="net", subnets=[{"cidr": "10.9.0.0/24"}])
    theirs = await post(client, "networks", project="other", name="net", subnets=[{"cidr": "10.9.0.0/24"}])
    await post(client, "instances", image="busybox", name="a", networks=[{"network": "net"}])
    await post(client, "instances", project="other", image="busybox", name="b", networks=[{"network": "net"}])
    table = by_network(await LocalControlPlane(ctl).network_names(agent.host_id))
    assert set(table[mine["id"]]) - {k for k in table[mine["id"]] if len(k) == 12} == {"a"}
    assert set(table[theirs["id"]]) - {k for k in table[theirs["id"]] if len(k) == 12} == {"b"}


@pytest.mark.anyio
@pytest.mark.usefixtures("busybox")
async def test_rename_renames_the_name_on_networks(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    net = await post(client, "networks", name="net", subnets=[{"cidr": "10.3.0.0/24"}])
    inst = await post(client, "instances", image="busybox", name="old", networks=[{"network": "net"}])
    await post(client, "instances", image="busybox", name="taken", networks=[{"network": "net"}])
    nudges = len(agent.called("names_changed"))
    resp = await client.post("/v1/projects/default/instances/old/rename", json={"name": "new"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "new" and resp.json()["id"] == inst["id"]
    assert agent.called("names_changed")[nudges:] == [[net["id"]]]
    table = by_network(await LocalControlPlane(ctl).network_names(agent.host_id))
    assert "new" in table[net["id"]] and "old" not in table[net["id"]]

    resp = await client.post("/v1/projects/default/instances/new/rename", json={"name": "taken"})
    assert "name: 'taken' is already in use" in error_of(resp, 409)["message"]
    resp = await client.post("/v1/projects/default/instances/new/rename", json={"name": "-bad"})
    assert error_of(resp, 400)["message"].startswith("name")
    resp = await client.post("/v1/projects/default/instances/nope/rename", json={"name": "x"})
    error_of(resp, 404)
    resp = await client.post("/v1/projects/default/instances/new/rename", json={"name": "new"})
    assert resp.status_code == 200  # the same name again changes nothing


@pytest.mark.anyio
@pytest.mark.usefixtures("busybox")
async def test_an_auto_removed_instance_loses_its_names(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    net = await post(client, "networks", name="net", subnets=[{"cidr": "10.4.0.0/24"}])
    await post(client, "instances", image="busybox", name="stay", networks=[{"network": "net"}])
    tmp = await post(
        client, "instances", image="busybox", name="tmp", auto_remove=True, networks=[{"network": "net"}]
    )
    assert (await client.post(f"/v1/projects/default/instances/{tmp['id']}/start")).status_code == 200
    nudges = len(agent.called("names_changed"))
    await agent.exit(tmp["id"], 0)
    assert agent.called("names_changed")[nudges:] == [[net["id"]]]
    table = by_network(await LocalControlPlane(ctl).network_names(agent.host_id))
    assert "tmp" not in table[net["id"]] and "stay" in table[net["id"]]


@pytest.mark.anyio
@pytest.mark.usefixtures("busybox")
async def test_peers_on_other_hosts_resolve(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    """Records come from the controller, not from what a host runs: a host gets every port of the
    networks it has a port on, wherever the instance runs, and every host is nudged."""
    other = FakeAgent(host="host-2")
    register_host(ctl, other, name="host-2", runtime="fake", cgroup_version=2)
    net = await post(client, "networks", name="net", subnets=[{"cidr": "10.5.0.0/24"}])
    here = await post(client, "instances", image="busybox", name="here", networks=[{"network": "net"}])
    there = await post(client, "instances", image="busybox", name="there", networks=[{"network": "net"}])
    with ctl.sessions.begin() as s:  # as if the scheduler had placed it on host-2
        row = s.get(InstanceRow, there["id"])
        assert row is not None
        row.host_id = other.host_id
    plane = LocalControlPlane(ctl)
    for host in (agent.host_id, other.host_id):
        table = by_network(await plane.network_names(host))
        assert table[net["id"]]["here"] == [here["networks"][0]["ip"]]
        assert table[net["id"]]["there"] == [there["networks"][0]["ip"]]
    assert await plane.network_names("host-without-ports") == []
    resp = await client.delete(f"/v1/projects/default/instances/{here['id']}", params={"force": True})
    assert resp.status_code == 204, resp.text
    assert agent.called("names_changed")[-1] == other.called("names_changed")[-1] == [net["id"]]


label = st.text(alphabet="abcAB-_1", min_size=1, max_size=5)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([NET_A, NET_B]),
            st.sampled_from([ID_1, ID_2, "3" * 64]),
            label,
            st.lists(label, max_size=3),
            st.integers(2, 250),
        ),
        max_size=12,
    )
)
def test_compute_properties(raw: list[tuple[str, str, str, list[str], int]]) -> None:
    joined = {(net, inst): (name, aliases, n) for net, inst, name, aliases, n in raw}  # one port per network
    ports = [
        PortName(net, inst, name, tuple(aliases), f"10.0.0.{n}")
        for (net, inst), (name, aliases, n) in joined.items()
    ]
    out = compute(ports, {NET_A: ["10.0.0.0/24"]})
    assert [n.network_id for n in out] == sorted({NET_A, *(p.network_id for p in ports)})
    for network in out:
        mine = [p for p in ports if p.network_id == network.network_id]
        seen = set()
        for record in network.records:
            # Every answer is the address of one of that instance's ports on this very network.
            assert any(p.instance_id == record.instance_id and p.address == record.address for p in mine)
            assert (record.name, record.instance_id, record.address) not in seen
            seen.add((record.name, record.instance_id, record.address))
            assert record.name == record.name.lower()
        for port in mine:
            names = {r.name for r in network.records if r.instance_id == port.instance_id}
            assert {port.instance_name.lower(), port.instance_id[:12]} <= names
            assert {a.lower() for a in port.aliases} <= names
