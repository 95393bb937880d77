"""Volumes through the real API and SQLite, with a fake host agent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from atoll.model.errors import InvalidInput
from atoll.services.context import Controller
from atoll.services.mounts import BindPolicy

from .factories import P, create_instance, error_of, import_image
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
async def busybox(client: httpx.AsyncClient) -> dict[str, Any]:
    return await import_image(client, 1, tags=["busybox:latest"], cmd=["sh"])


async def volumes(client: httpx.AsyncClient, project: str = "default", **params: Any) -> list[str]:
    resp = await client.get(f"/v1/projects/{project}/volumes", params=params)
    assert resp.status_code == 200, resp.text
    return [v["name"] for v in resp.json()]


async def test_create_inspect_list_remove(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    resp = await client.post(f"{P}/volumes", json={"name": "db", "labels": {"tier": "data"}})
    assert resp.status_code == 201, resp.text
    vol = resp.json()
    assert (vol["name"], vol["driver"], vol["anonymous"], vol["used_by"]) == ("db", "local", False, [])
    # Creating it again is a no-op (docker volume create is idempotent).
    again = await client.post(f"{P}/volumes", json={"name": "db"})
    assert again.json()["id"] == vol["id"]
    anon = (await client.post(f"{P}/volumes", json={})).json()
    assert anon["name"] == anon["id"]
    assert sorted(await volumes(client)) == sorted(["db", anon["name"]])
    assert await volumes(client, label="tier=data") == ["db"]
    assert await volumes(client, name="d") == ["db"] or len(await volumes(client, name="d")) == 2
    assert await volumes(client, dangling="false") == []
    assert (await client.get(f"{P}/volumes/{vol['id'][:8]}")).json()["name"] == "db"
    assert (await client.delete(f"{P}/volumes/db")).status_code == 204
    assert ("remove_volume", vol["id"]) in agent.calls
    assert error_of(await client.get(f"{P}/volumes/db"), 404)["message"] == "volume 'db' not found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a"}, "name"),
        ({"name": "no/slash"}, "name"),
        ({"name": "vx", "driver": "nfs"}, "driver"),
        ({"name": "vv", "options": {"type": "tmpfs"}}, "options.type"),
    ],
)
async def test_bad_volumes_are_refused(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    resp = await client.post(f"{P}/volumes", json=body)
    assert resp.status_code == 400 and field in resp.json()["error"]["message"]
    assert await volumes(client) == []


async def test_in_use_and_prune(client: httpx.AsyncClient) -> None:
    inst = await create_instance(
        client, name="web", mounts=[{"source": "site", "destination": "/srv"}, {"destination": "/cache"}]
    )
    assert [(m["type"], m["name"], m["destination"], m["rw"]) for m in inst["mounts"]] == [
        ("volume", "site", "/srv", True),
        ("volume", inst["mounts"][1]["source"], "/cache", True),
    ]
    err = error_of(await client.delete(f"{P}/volumes/site"), 409)
    assert err["message"] == "volume site is in use by instance(s) web: remove them first"
    await client.post(f"{P}/volumes", json={"name": "idle"})
    assert await volumes(client, dangling="true") == ["idle"]
    pruned = (await client.post(f"{P}/volumes/prune")).json()
    assert pruned == {"deleted": []}  # named ones need all=true, used ones are never pruned
    assert (await client.post(f"{P}/volumes/prune", params={"all": "true"})).json() == {"deleted": ["idle"]}
    assert (await client.delete(f"{P}/instances/web", params={"volumes": "true"})).status_code == 204
    assert await volumes(client) == ["site"]  # the anonymous one went with it


async def test_failed_create_leaves_no_volumes(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    agent.fail["create_instance"] = InvalidInput("mounts[0].source: /nope does not exist on host host-1")
    resp = await client.post(
        f"{P}/instances",
        json={
            "image": "busybox",
            "mounts": [
                {"type": "bind", "source": "/nope", "destination": "/a"},
                {"source": "fresh", "destination": "/b"},
            ],
        },
    )
    assert "does not exist" in error_of(resp, 400)["message"]
    assert await volumes(client) == []
    assert (await client.get(f"{P}/instances", params={"all": "true"})).json() == []


async def test_projects_are_isolated(client: httpx.AsyncClient) -> None:
    await client.post("/v1/projects", json={"name": "other"})
    await client.post(f"{P}/volumes", json={"name": "mine"})
    assert error_of(await client.get("/v1/projects/other/volumes/mine"), 404)
    assert error_of(await client.delete("/v1/projects/other/volumes/mine"), 404)
    assert await volumes(client, "other") == []


async def test_bind_policy_applies(client: httpx.AsyncClient, ctl: Controller) -> None:
    ctl.bind_mounts = BindPolicy.parse("deny")
    resp = await client.post(
        f"{P}/instances",
        json={"image": "busybox", "mounts": [{"type": "bind", "source": "/srv", "destination": "/a"}]},
    )
    assert error_of(resp, 400)["message"] == "mounts[0].source: bind mounts are not allowed on this cloud"
