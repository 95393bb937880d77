"""Security groups and published ports through the real API and SQLite, with a fake host agent that
fetches its policy through the real control plane."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from atoll.model.secgroups import Direction, Protocol, RuleSpec
from atoll.services.publish import RANDOM_RANGE

from .factories import P, error_of, import_image
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
async def setup(client: httpx.AsyncClient) -> None:
    await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])
    resp = await client.post(f"{P}/networks", json={"name": "net1", "subnets": [{"cidr": "10.0.0.0/24"}]})
    assert resp.status_code == 201, resp.text


async def create_instance(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(f"{P}/instances", json={"image": "busybox", **body})


async def on_net(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await create_instance(client, networks=[{"network": "net1"}], **body)
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def group(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    resp = await client.post(f"{P}/security-groups", json={"name": name})
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def rule(client: httpx.AsyncClient, group: str, **body: Any) -> httpx.Response:
    return await client.post(f"{P}/security-groups/{group}/rules", json=body)


async def test_default_group_is_made_on_first_need(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    groups = (await client.get(f"{P}/security-groups")).json()
    assert [g["name"] for g in groups] == ["default"]
    default = groups[0]
    rules = {
        (r["direction"], r["protocol"], r["remote_ip_prefix"], r["remote_group"]) for r in default["rules"]
    }
    assert rules == {("egress", "any", "0.0.0.0/0", None), ("ingress", "any", None, default["id"])}
    inst = await on_net(client)
    ports = (await client.get(f"{P}/ports", params={"instance": inst["id"]})).json()
    assert ports[0]["security_groups"] == [default["id"]]
    # The host was told, and its policy holds the port, the group's rules and its members.
    policy = agent.policies[-1]
    assert [(p.port_id, p.ip, p.groups) for p in policy.ports] == [
        (ports[0]["id"], "10.0.0.2", [default["id"]])
    ]
    (g,) = policy.groups
    assert g.members == ["10.0.0.2"]
    assert RuleSpec(Direction.INGRESS, Protocol.ANY, remote_group=default["id"], remote_cidr="") in g.rules


async def test_rules_are_validated_naming_the_field(client: httpx.AsyncClient) -> None:
    await group(client, "web")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"direction": "sideways"}, "direction"),
        ({"direction": "ingress", "protocol": "sctp"}, "protocol"),
        ({"direction": "ingress", "protocol": "tcp", "port_range_min": 0}, "port_range_min"),
        (
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 90, "port_range_max": 80},
            "port_range_max",
        ),
        (
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 70000},
            "port_range_max",
        ),
        ({"direction": "ingress", "protocol": "icmp", "port_range_min": 80}, "port_range_min"),
        ({"direction": "ingress", "remote_ip_prefix": "10.0.0.1/24"}, "remote_ip_prefix"),
        ({"direction": "ingress", "remote_ip_prefix": "banana"}, "remote_ip_prefix"),
        ({"direction": "ingress", "remote_group": "nope"}, "remote_group"),
        ({"direction": "ingress", "remote_group": "web", "remote_ip_prefix": "0.0.0.0/0"}, "remote_group"),
        ({"direction": "ingress", "ethertype": "IPv6"}, "ethertype"),
    ]
    for body, field in bad:
        err = error_of(await rule(client, "web", **body), 400)
        assert err["message"].startswith(f"{field}:"), (body, err)
    rules = (await client.get(f"{P}/security-groups/web")).json()["rules"]
    assert [(r["direction"], r["remote_ip_prefix"]) for r in rules] == [("egress", "0.0.0.0/0")]  # Neutron's

    ok = await rule(client, "web", direction="ingress", protocol="tcp", port_range_min=80, port_range_max=90)
    assert ok.status_code == 201, ok.text
    assert ok.json()["remote_ip_prefix"] == "0.0.0.0/0"
    dup = await rule(client, "web", direction="ingress", protocol="tcp", port_range_min=80, port_range_max=90)
    error_of(dup, 409)


async def test_groups_in_use_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    web = await group(client, "web")
    await group(client, "clients")
    r = await rule(
        client, "web", direction="ingress", protocol="tcp", port_range_min=80, remote_group="clients"
    )
    assert r.status_code == 201
    assert (
        "remote group of rule"
        in error_of(await client.delete(f"{P}/security-groups/clients"), 409)["message"]
    )
    inst = await on_net(client, security_groups=["web"])
    assert "in use by port" in error_of(await client.delete(f"{P}/security-groups/web"), 409)["message"]
    assert (await client.delete(f"{P}/instances/{inst['id']}", params={"force": "true"})).status_code == 204
    assert (await client.delete(f"{P}/security-groups/{web['id']}")).status_code == 204
    assert (await client.delete(f"{P}/security-groups/clients")).status_code == 204
    assert (await client.delete(f"{P}/security-group-rules/{r.json()['id']}")).status_code == 404
    default = await client.delete(f"{P}/security-groups/default")
    assert "cannot be deleted" in error_of(default, 409)["message"]


async def test_groups_of_a_running_instance_change(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    web = await group(client, "web")
    inst = await on_net(client)
    assert error_of(await create_instance(client, security_groups=["web"]), 400)["message"].startswith(
        "security_groups:"
    )
    bad = await client.put(f"{P}/instances/{inst['id']}/security-groups", json={"security_groups": ["x"]})
    assert error_of(bad, 400)["message"].startswith("security_groups[0]:")
    before = len(agent.policies)
    resp = await client.put(
        f"{P}/instances/{inst['name']}/security-groups", json={"security_groups": ["web"]}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()[0]["security_groups"] == [web["id"]]
    assert len(agent.policies) == before + 1 and agent.policies[-1].ports[0].groups == [web["id"]]
    port = resp.json()[0]["id"]
    resp = await client.put(f"{P}/ports/{port[:8]}/security-groups", json={"security_groups": []})
    assert resp.json()["security_groups"] == []
    assert agent.policies[-1].ports[0].groups == []


async def test_projects_never_see_each_others_groups(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/projects", json={"name": "other"})).status_code == 201
    mine = await group(client, "web")
    theirs = (await client.get("/v1/projects/other/security-groups")).json()
    assert [g["name"] for g in theirs] == ["default"]
    for ref in ("web", mine["id"], mine["id"][:8]):
        assert (await client.get(f"/v1/projects/other/security-groups/{ref}")).status_code == 404
        assert (await client.delete(f"/v1/projects/other/security-groups/{ref}")).status_code == 404
    other_default = theirs[0]["id"]
    r = await rule(client, "web", direction="ingress", remote_group=other_default)
    assert error_of(r, 400)["message"].startswith("remote_group:")


async def test_published_ports(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    resp = await create_instance(
        client,
        name="web",
        publish=[
            {"container_port": 80, "host_port": 8080},
            {"container_port": 80, "host_port": 8080, "protocol": "udp"},
            {"container_port": 443, "host_ip": "127.0.0.1"},
        ],
    )
    assert resp.status_code == 201, resp.text
    published = resp.json()["published"]
    assert published[:2] == [
        {"container_port": 80, "protocol": "tcp", "host_ip": "0.0.0.0", "host_port": 8080},
        {"container_port": 80, "protocol": "udp", "host_ip": "0.0.0.0", "host_port": 8080},
    ]
    assert published[2]["host_ip"] == "127.0.0.1"
    assert RANDOM_RANGE[0] <= published[2]["host_port"] <= RANDOM_RANGE[1]
    spec = agent.specs[resp.json()["id"]]
    assert [(p.protocol, p.host_port, p.container_port) for p in spec.published][:1] == [("tcp", 8080, 80)]
    taken = await create_instance(client, publish=[{"container_port": 81, "host_port": 8080}])
    err = error_of(taken, 409)
    assert err["message"].startswith("publish[0].host_port: 8080/tcp is already published by instance")
    for body, field in (
        ({"container_port": 80, "protocol": "sctp"}, "publish[0].protocol"),
        ({"container_port": 80, "host_ip": "localhost"}, "publish[0].host_ip"),
        ({"container_port": 80, "host_port": 70000}, "publish[0].host_port"),
    ):
        assert error_of(await create_instance(client, publish=[body]), 400)["message"].startswith(field)
    assert error_of(await create_instance(client, publish=[{"container_port": 0}]), 400)
    assert len((await client.get(f"{P}/instances", params={"all": "true"})).json()) == 1  # nothing half-made
    # Removing the instance frees its host ports.
    assert (await client.delete(f"{P}/instances/web", params={"force": "true"})).status_code == 204
    again = await create_instance(client, publish=[{"container_port": 81, "host_port": 8080}])
    assert again.status_code == 201, again.text


async def test_publish_all_takes_the_exposed_ports(client: httpx.AsyncClient) -> None:
    await import_image(client, 2, tags=["web:latest"], exposed_ports=["80/tcp", "53/udp", "8080/tcp"])
    resp = await client.post(
        f"{P}/instances",
        json={"image": "web", "publish_all": True, "publish": [{"container_port": 8080, "host_port": 9090}]},
    )
    assert resp.status_code == 201, resp.text
    published = {(p["container_port"], p["protocol"]): p["host_port"] for p in resp.json()["published"]}
    assert set(published) == {(80, "tcp"), (53, "udp"), (8080, "tcp")}
    assert published[(8080, "tcp")] == 9090
