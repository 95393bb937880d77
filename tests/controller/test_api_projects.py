from __future__ import annotations

import httpx
import pytest

from .factories import error_of

pytestmark = pytest.mark.anyio


async def test_default_project_exists(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/projects")
    assert resp.status_code == 200
    assert [p["name"] for p in resp.json()] == ["default"]


async def test_create_project(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/projects", json={"name": "team-a"})
    assert resp.status_code == 201
    assert resp.json()["name"] == "team-a"
    assert resp.json()["created_at"].endswith("Z")
    assert [p["name"] for p in (await client.get("/v1/projects")).json()] == ["default", "team-a"]
    err = error_of(await client.post("/v1/projects", json={"name": "team-a"}), 409)
    assert err["code"] == "conflict"


async def test_invalid_project_names_the_field(client: httpx.AsyncClient) -> None:
    err = error_of(await client.post("/v1/projects", json={"name": "Bad Name"}), 400)
    assert err["code"] == "invalid"
    assert err["message"].startswith("name:")
    err = error_of(await client.post("/v1/projects", json={"name": "ok", "extra": 1}), 400)
    assert err["message"].startswith("extra:")
    err = error_of(
        await client.post("/v1/projects", content=b"{", headers={"content-type": "application/json"}), 400
    )
    assert err["code"] == "invalid"


async def test_unknown_project_is_404(client: httpx.AsyncClient) -> None:
    for path in ("images", "instances"):
        err = error_of(await client.get(f"/v1/projects/nope/{path}"), 404)
        assert err == {"code": "not_found", "message": "project 'nope' not found"}


async def test_unknown_route_has_the_error_shape(client: httpx.AsyncClient) -> None:
    assert error_of(await client.get("/v1/nothing"), 404)["code"] == "not_found"
    assert error_of(await client.put("/v1/projects"), 405)["code"] == "method_not_allowed"


async def test_hosts(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/hosts")
    assert resp.status_code == 200
    [host] = resp.json()
    assert host["id"] == "host-1"
    assert (host["name"], host["state"], host["runtime"], host["cgroup_version"]) == (
        "test-host",
        "ready",
        "fake",
        2,
    )


async def test_openapi(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["info"]["title"] == "Atoll"
    paths = doc["paths"]
    assert "/v1/projects/{project}/instances/{ref}/wait" in paths
    assert "/v1/projects/{project}/images/{ref}/tag" in paths
