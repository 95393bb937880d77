"""Registry routes against the real app and SQLite, with the fake agent doing the transfers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from atoll.model.errors import RegistryAuthError
from atoll.model.image import ImageConfig, ImageRecord
from atoll.model.registry import Credential

from .factories import P, create_instance, error_of, import_image
from .fakes import FakeAgent, image_id

pytestmark = pytest.mark.anyio


def record(n: int, tag: str) -> ImageRecord:
    return ImageRecord(
        id=image_id(n),
        repo_tags=[tag],
        layers=[image_id(f"layer{n}")],
        size=100,
        created="2024-01-01T00:00:00Z",
        architecture="amd64",
        os="linux",
        config=ImageConfig(cmd=["sh"]),
    )


def lines(resp: httpx.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in resp.text.splitlines()]


async def test_pull_streams_progress_and_catalogs_the_image(
    client: httpx.AsyncClient, agent: FakeAgent
) -> None:
    agent.pullable["reg.example:5000/team/app:1"] = record(7, "reg.example:5000/team/app:1")
    events = lines(await client.post(f"{P}/images/pull", json={"reference": "reg.example:5000/team/app:1"}))
    assert events[0] == {"status": "Downloading", "id": "abc", "current": 1, "total": 2}
    assert events[-1]["image"]["id"] == image_id(7)
    assert events[-1]["image"]["repo_tags"] == ["reg.example:5000/team/app:1"]
    assert events[-1]["digest"].startswith("sha256:")
    got = await client.get(f"{P}/images/reg.example:5000/team/app:1")
    assert got.status_code == 200 and got.json()["id"] == image_id(7)


async def test_pull_errors_before_any_progress_are_plain_errors(client: httpx.AsyncClient) -> None:
    err = error_of(await client.post(f"{P}/images/pull", json={"reference": "reg.example/absent:1"}), 404)
    assert "manifest unknown" in err["message"]
    err = error_of(await client.post(f"{P}/images/pull", json={"reference": "Bad Name"}), 400)
    assert err["message"].startswith("reference: invalid reference format")
    error_of(await client.post("/v1/projects/nope/images/pull", json={"reference": "x"}), 404)


async def test_login_is_checked_kept_per_project_and_never_shown(
    client: httpx.AsyncClient, agent: FakeAgent
) -> None:
    body = {"registry": "https://index.docker.io/v1/", "username": "alice", "password": "s3cret"}
    resp = await client.post(f"{P}/registry-logins", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["registry"] == "docker.io" and "s3cret" not in resp.text
    [(registry, cred)] = agent.called("registry_login")
    assert registry == "docker.io" and cred == Credential("alice", "s3cret") and "s3cret" not in repr(cred)
    listing = await client.get(f"{P}/registry-logins")
    assert [x["registry"] for x in listing.json()] == ["docker.io"] and "s3cret" not in listing.text

    agent.pullable["busybox:latest"] = record(8, "busybox:latest")
    lines(await client.post(f"{P}/images/pull", json={"reference": "busybox"}))
    [(_, creds)] = agent.called("pull_image")
    assert creds["docker.io"] == creds["registry-1.docker.io"] == Credential("alice", "s3cret")

    await client.post("/v1/projects", json={"name": "other"})
    assert (await client.get("/v1/projects/other/registry-logins")).json() == []

    assert (await client.delete(f"{P}/registry-logins/docker.io")).status_code == 204
    error_of(await client.delete(f"{P}/registry-logins/docker.io"), 404)
    error_of(await client.post(f"{P}/registry-logins", json={**body, "registry": "bad host!"}), 400)


async def test_a_refused_login_is_not_kept(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    agent.fail["registry_login"] = RegistryAuthError("reg.example: the registry refused the credentials")
    body = {"registry": "reg.example", "username": "alice", "password": "wrong"}
    err = error_of(await client.post(f"{P}/registry-logins", json=body), 403)
    assert err["code"] == "registry_auth"
    assert (await client.get(f"{P}/registry-logins")).json() == []


async def test_push_streams_and_ends_with_the_digest(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await import_image(client, 3, tags=["reg.example/team/app:2"])
    events = lines(await client.post(f"{P}/images/push", json={"reference": "reg.example/team/app:2"}))
    assert events[-1]["digest"].startswith("sha256:")
    [(pushed_id, reference, _)] = agent.called("push_image")
    assert pushed_id == image_id(3) and reference == "reg.example/team/app:2"
    error_of(await client.post(f"{P}/images/push", json={"reference": "reg.example/absent:1"}), 404)


async def test_prune_removes_dangling_then_unused_images(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await import_image(client, 1, tags=["kept:1"])
    await import_image(client, 2, tags=[])
    await import_image(client, 3, tags=["used:1"])
    await create_instance(client, image="used:1")
    resp = await client.post(f"{P}/images/prune")
    assert resp.status_code == 200, resp.text
    assert resp.json()["deleted"] == [image_id(2)] and resp.json()["reclaimed"] == 1234
    resp = await client.post(f"{P}/images/prune", params={"all": "true"})
    assert resp.json()["deleted"] == [image_id(1)] and resp.json()["untagged"] == ["kept:1"]
    assert image_id(1) in agent.called("remove_image") and image_id(3) not in agent.called("remove_image")
    assert (await client.get(f"{P}/images/used:1")).status_code == 200
