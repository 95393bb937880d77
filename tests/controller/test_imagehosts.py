"""The catalog believes the host about what it holds (services/imagehosts.py): an image the host lost
(a crash before its pull's sync) is forgotten when a create finds it missing, and when a single-node
cloud starts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from atoll.services import imagehosts
from atoll.services.context import Controller

from .factories import P, error_of, import_image
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio


async def image_ids(client: httpx.AsyncClient) -> set[str]:
    resp = await client.get(f"{P}/images")
    assert resp.status_code == 200, resp.text
    return {i["id"] for i in resp.json()}


async def test_a_create_that_finds_the_image_lost_forgets_it(
    client: httpx.AsyncClient, agent: FakeAgent
) -> None:
    kept: dict[str, Any] = await import_image(client, 1, tags=["kept:1"])
    lost: dict[str, Any] = await import_image(client, 2, tags=["lost:1"])
    del agent.images[lost["id"]]  # the host's store discarded it at its start
    err = error_of(await client.post(f"{P}/instances", json={"image": "lost:1"}), 404)
    assert "lost it" in err["message"] and "pull it again" in err["message"], err
    assert await image_ids(client) == {kept["id"]}  # gone from the catalog, the other kept
    assert (await client.get(f"{P}/instances", params={"all": True})).json() == []
    again = await import_image(client, 2, tags=["lost:1"])  # pulled again: usable again
    assert again["id"] == lost["id"]
    resp = await client.post(f"{P}/instances", json={"image": "lost:1"})
    assert resp.status_code == 201, resp.text


async def test_at_start_every_lost_image_is_forgotten(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    kept = await import_image(client, 1, tags=["kept:1"])
    lost = await import_image(client, 2, tags=["lost:1"])
    del agent.images[lost["id"]]
    assert await imagehosts.forget_lost(ctl, agent) == [lost["id"]]
    assert await image_ids(client) == {kept["id"]}
    assert await imagehosts.forget_lost(ctl, agent) == []  # nothing more to forget: idempotent
