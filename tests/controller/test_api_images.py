from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from atoll.services.context import Controller
from atoll.services.images import import_images

from .factories import P, create_instance, error_of, import_image, run_instance
from .fakes import FakeAgent, image_archive, image_id, image_record

pytestmark = pytest.mark.anyio


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_import_streams_and_normalizes_tags(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    archive = image_archive(image_record(1, tags=["docker.io/library/busybox", "ghcr.io/org/app:v1"]))
    resp = await client.post(f"{P}/images/import", content=_chunks(archive, 16))
    assert resp.status_code == 200, resp.text
    [img] = resp.json()
    assert img["id"] == image_id(1)
    assert img["repo_tags"] == ["busybox:latest", "ghcr.io/org/app:v1"]
    assert img["config"]["cmd"] == ["sh"] and img["project"] == "default" and not img["public"]
    assert agent.received[0] >= len(range(0, len(archive), 16))  # chunk by chunk, not one buffer


async def test_bad_archive_is_400(client: httpx.AsyncClient) -> None:
    err = error_of(await client.post(f"{P}/images/import", content=b"not json"), 400)
    assert err["code"] == "bad_image"


async def test_list_and_get_by_tag_id_and_prefix(client: httpx.AsyncClient) -> None:
    await import_image(client, 1, tags=["busybox:latest"])
    await import_image(client, 2, tags=["alpine:3"])
    listed = (await client.get(f"{P}/images")).json()
    assert sorted(i["id"] for i in listed) == sorted([image_id(1), image_id(2)])
    full = image_id(1)
    hexid = full.removeprefix("sha256:")
    for ref in (
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        full,
        hexid,
        hexid[:4],
        f"sha256:{hexid[:6]}",
    ):
        resp = await client.get(f"{P}/images/{ref}")
        assert resp.status_code == 200, (ref, resp.text)
        assert resp.json()["id"] == full
    assert error_of(await client.get(f"{P}/images/nothere"), 404)["code"] == "not_found"
    assert error_of(await client.get(f"{P}/images/{hexid[:3]}"), 404)["code"] == "not_found"
    assert error_of(await client.get(f"{P}/images/Bad:Ref!"), 400)["message"].startswith("image:")


async def test_ambiguous_prefix_is_409(client: httpx.AsyncClient) -> None:
    ids: dict[str, list[str]] = {}
    n = 0
    while True:  # find two image ids that share their first four hex digits
        n += 1
        ids.setdefault(image_id(n)[7:11], []).append(str(n))
        pair = next((v for v in ids.values() if len(v) == 2), None)
        if pair:
            break
    for k in pair:
        await import_image(client, k, tags=[f"img{k}:latest"])
    err = error_of(await client.get(f"{P}/images/{image_id(pair[0])[7:11]}"), 409)
    assert "ambiguous" in err["message"]


async def test_tag_moves_and_retag(client: httpx.AsyncClient) -> None:
    await import_image(client, 1, tags=["app:1"])
    await import_image(client, 2, tags=["app:2"])
    resp = await client.post(f"{P}/images/app:2/tag", json={"tag": "app:1"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["repo_tags"] == ["app:1", "app:2"]
    assert (await client.get(f"{P}/images/{image_id(1)}")).json()["repo_tags"] == []
    resp = await client.post(f"{P}/images/app:2/tag", json={"tag": "reg.io:5000/ns/app"})
    assert resp.json()["repo_tags"] == ["app:1", "app:2", "reg.io:5000/ns/app:latest"]
    assert (await client.get(f"{P}/images/reg.io:5000/ns/app")).json()["id"] == image_id(2)
    err = error_of(await client.post(f"{P}/images/app:2/tag", json={"tag": "UPPER"}), 400)
    assert err["message"].startswith("tag:")
    err = error_of(await client.post(f"{P}/images/app:2/tag", json={}), 400)
    assert err["message"].startswith("tag:")
    # Importing an image again with a tag moves it back.
    await import_image(client, 1, tags=["app:1"])
    assert (await client.get(f"{P}/images/app:1")).json()["id"] == image_id(1)


async def test_build(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    config = json.dumps({"cmd": ["/hello"], "env": ["A=1"], "working_dir": "/app"})
    resp = await client.post(
        f"{P}/images/build", params={"tag": "hello", "config": config}, content=_chunks(b"rootfs" * 100, 64)
    )
    assert resp.status_code == 201, resp.text
    img = resp.json()
    assert img["repo_tags"] == ["hello:latest"]
    assert img["config"]["cmd"] == ["/hello"] and img["config"]["working_dir"] == "/app"
    assert agent.called("build_image")[0].cmd == ["/hello"]
    inst = await create_instance(client, image="hello")
    assert inst["process"]["args"] == ["/hello"] and inst["process"]["cwd"] == "/app"


async def test_build_rejects_bad_input_before_reading(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    err = error_of(
        await client.post(f"{P}/images/build", params={"config": '{"cmd": "x"}'}, content=b"r"), 400
    )
    assert err["message"].startswith("config.cmd:")
    err = error_of(await client.post(f"{P}/images/build", params={"config": "{"}, content=b"r"), 400)
    assert err["message"].startswith("config")
    err = error_of(await client.post(f"{P}/images/build", params={"tag": "a:b:c"}, content=b"r"), 400)
    assert err["message"].startswith("tag:")
    assert agent.called("build_image") == []


async def test_rmi_untags_one_of_several_tags(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await import_image(client, 1, tags=["a:1", "b:1"])
    resp = await client.delete(f"{P}/images/a:1")
    assert resp.status_code == 200
    assert resp.json() == {"untagged": ["a:1"], "deleted": []}
    resp = await client.delete(f"{P}/images/b:1")
    assert resp.json() == {"untagged": ["b:1"], "deleted": [image_id(1)]}
    assert agent.called("remove_image") == [image_id(1)]
    assert (await client.get(f"{P}/images")).json() == []


async def test_rmi_by_id_with_several_tags_needs_force(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await import_image(client, 1, tags=["a:1", "b:1"])
    err = error_of(await client.delete(f"{P}/images/{image_id(1)}"), 409)
    assert "must be forced" in err["message"]
    resp = await client.delete(f"{P}/images/{image_id(1)[7:19]}", params={"force": "true"})
    assert resp.json() == {"untagged": ["a:1", "b:1"], "deleted": [image_id(1)]}
    assert agent.called("remove_image") == [image_id(1)]


async def test_rmi_of_an_image_in_use(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    await import_image(client, 1, tags=["busybox:latest"])
    inst = await run_instance(client, image="busybox", name="web")
    err = error_of(await client.delete(f"{P}/images/busybox", params={"force": "true"}), 409)
    assert "cannot be forced" in err["message"] and "web" in err["message"]
    await client.post(f"{P}/instances/web/stop")
    err = error_of(await client.delete(f"{P}/images/busybox"), 409)
    assert "must be forced" in err["message"] and "web" in err["message"]
    resp = await client.delete(f"{P}/images/busybox", params={"force": "true"})
    assert resp.json() == {"untagged": ["busybox:latest"], "deleted": []}
    assert agent.called("remove_image") == []
    # The instance still has its image; once the instance is gone the dangling image can go.
    assert (await client.get(f"{P}/images/{image_id(1)}")).json()["repo_tags"] == []
    assert (await client.delete(f"{P}/instances/{inst['id']}")).status_code == 204
    resp = await client.delete(f"{P}/images/{image_id(1)}")
    assert resp.json() == {"untagged": [], "deleted": [image_id(1)]}


async def test_rmi_agent_failure_keeps_the_catalog(client: httpx.AsyncClient, agent: FakeAgent) -> None:
    from atoll.model.errors import RuntimeFailure

    await import_image(client, 1)
    agent.fail["remove_image"] = RuntimeFailure("disk on fire")
    err = error_of(await client.delete(f"{P}/images/busybox"), 500)
    assert err == {"code": "runtime", "message": "disk on fire"}
    assert (await client.get(f"{P}/images/busybox")).status_code == 200


async def test_projects_see_their_own_and_public_images(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    await client.post("/v1/projects", json={"name": "a"})
    await client.post("/v1/projects", json={"name": "b"})
    starter = image_archive(image_record("starter", tags=["atoll/starter:latest"]))

    async def body() -> AsyncIterator[bytes]:
        yield starter

    await import_images(ctl, project="default", chunks=body(), public=True)
    await import_image(client, "private", project="a", tags=["secret:1"])
    names_a = sorted(t for i in (await client.get("/v1/projects/a/images")).json() for t in i["repo_tags"])
    names_b = sorted(t for i in (await client.get("/v1/projects/b/images")).json() for t in i["repo_tags"])
    assert names_a == ["atoll/starter:latest", "secret:1"]
    assert names_b == ["atoll/starter:latest"]
    assert error_of(await client.get("/v1/projects/b/images/secret:1"), 404)["code"] == "not_found"
    assert error_of(await client.get(f"/v1/projects/b/images/{image_id('private')}"), 404)
    # Public images can be run from any project, but only their owner removes them.
    inst = await create_instance(client, project="b", image="atoll/starter")
    assert inst["image_id"] == image_id("starter")
    err = error_of(await client.delete("/v1/projects/b/images/atoll/starter"), 409)
    assert "belongs to project 'default'" in err["message"]
    # Tagging a public image adopts it into the project.
    resp = await client.post("/v1/projects/b/images/atoll/starter/tag", json={"tag": "mine"})
    assert resp.json()["project"] == "b" and resp.json()["repo_tags"] == ["mine:latest"]
    # Content shared by two projects stays on the host when one of them removes it.
    await client.delete(f"/v1/projects/b/instances/{inst['id']}")
    resp = await client.delete("/v1/projects/b/images/mine")
    assert resp.json()["deleted"] == [image_id("starter")]
    assert agent.called("remove_image") == []
