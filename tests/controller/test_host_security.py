"""``host_security``: the policy a host enforces, computed in a fixed number of queries, checked against
what the API says of every port and group (several ports, groups per port, a remote group whose
members are elsewhere)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from atoll.services.context import Controller
from atoll.services.secgroup_ports import host_security

from .factories import P, import_image
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


async def made(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def test_policy_of_many_ports_matches_the_api(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])
    await made(await client.post(f"{P}/networks", json={"name": "n1", "subnets": [{"cidr": "10.0.0.0/24"}]}))
    web = await made(await client.post(f"{P}/security-groups", json={"name": "web"}))
    db = await made(await client.post(f"{P}/security-groups", json={"name": "db"}))
    lone = await made(await client.post(f"{P}/security-groups", json={"name": "lone"}))
    rule = {"direction": "ingress", "protocol": "tcp", "port_range_min": 5432, "port_range_max": 5432}
    await made(await client.post(f"{P}/security-groups/db/rules", json={**rule, "remote_group": "web"}))
    await made(await client.post(f"{P}/security-groups/web/rules", json={**rule, "remote_group": "lone"}))
    layouts = [["web"], ["web", "db"], ["db"], [], None, ["web"]]
    for groups in layouts:
        body: dict[str, Any] = {"image": "busybox", "networks": [{"network": "n1"}]}
        if groups is not None:
            body["security_groups"] = groups
        await made(await client.post(f"{P}/instances", json=body))

    policy = host_security(ctl, agent.host_id)

    ports = sorted((await client.get(f"{P}/ports")).json(), key=lambda p: p["id"])
    assert [(p.port_id, p.ip, p.groups) for p in policy.ports] == [
        (
            p["id"],
            p["fixed_ips"][0]["ip"],
            sorted(p["security_groups"]),
        )
        for p in ports
    ]
    members: dict[str, list[str]] = {}
    for p in policy.ports:
        for g in p.groups:
            members.setdefault(g, []).append(p.ip)
    # ``lone`` has no port anywhere but is web's remote group: it comes with no members.
    assert [g.id for g in policy.groups] == sorted({*members, lone["id"]})
    by_id = {g.id: g for g in policy.groups}
    for group_id, addresses in members.items():
        assert by_id[group_id].members == sorted(set(addresses))
    assert by_id[lone["id"]].members == []
    assert {r.remote_group for r in by_id[db["id"]].rules if r.remote_group} == {web["id"]}
    assert {r.remote_group for r in by_id[web["id"]].rules if r.remote_group} == {lone["id"]}
    # The same rules as the API lists (in the order of their ids, as before).
    web_rules = (await client.get(f"{P}/security-groups/web")).json()["rules"]
    expected = [r["remote_group"] for r in sorted(web_rules, key=lambda r: r["id"])]
    assert [r.remote_group or None for r in by_id[web["id"]].rules] == expected
