"""The image GC policy on the real services and SQLite, with a fake host whose disk fills up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from atoll.services import image_gc
from atoll.services.context import Controller

from .factories import P, create_instance, import_image, run_instance
from .fakes import FakeAgent, image_id

pytestmark = pytest.mark.anyio

LATER = datetime.now(UTC) + timedelta(days=1)
NOW_ONLY = image_gc.GcPolicy(min_age=0)


async def _ids(client: httpx.AsyncClient) -> set[str]:
    return {i["id"] for i in (await client.get(f"{P}/images")).json()}


async def test_images_that_lost_every_name_are_collected(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    await import_image(client, 1, tags=["app:1"])
    await import_image(client, 2, tags=["app:1"])  # moves the tag: image 1 is garbage now
    await import_image(client, 3, tags=["busybox:latest"])
    await import_image(client, 4, tags=["other:1"])
    await create_instance(client, image="other:1")
    await client.delete(f"{P}/images/other:1", params={"force": True})  # untagged, but in use

    report = await image_gc.collect(ctl, image_gc.GcPolicy(), now=LATER)

    assert report.deleted == [f"default/{image_id(1)}"]
    assert await _ids(client) == {image_id(2), image_id(3), image_id(4)}
    assert image_id(1) not in agent.images and image_id(4) in agent.images


async def test_recent_garbage_is_kept_for_min_age(client: httpx.AsyncClient, ctl: Controller) -> None:
    await import_image(client, 1, tags=["app:1"])
    await import_image(client, 2, tags=["app:1"])
    report = await image_gc.collect(ctl, image_gc.GcPolicy(min_age=3600))
    assert report.deleted == [] and image_id(1) in await _ids(client)


async def test_disk_pressure_removes_unused_images_least_recently_used_first(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    for n in range(1, 6):
        await import_image(client, n, tags=[f"img{n}:latest"])
    await run_instance(client, image="img3")  # in use: never collected
    used = await create_instance(client, image="img1")  # the most recently used of the unused ones
    assert (await client.delete(f"{P}/instances/{used['id']}")).status_code == 204
    # 5 images of 1234 bytes on a 10,000-byte disk: 61.7% full; high 50% -> down below 40%
    agent.disk_total = 10_000
    policy = image_gc.GcPolicy(high=50, low=40, min_age=0)

    report = await image_gc.collect(ctl, policy)

    # 2 removals bring it to 37%: the two least recently used unused ones (img2, img4)
    assert report.deleted == [f"default/{image_id(2)}", f"default/{image_id(4)}"]
    assert report.reclaimed == 2 * 1234
    assert await _ids(client) == {image_id(1), image_id(3), image_id(5)}
    # below the high mark, nothing more goes
    assert (await image_gc.collect(ctl, policy)).deleted == []


async def test_public_and_used_images_survive_any_pressure(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent
) -> None:
    await import_image(client, 1, tags=["busybox:latest"])
    await run_instance(client, image="busybox")
    agent.disk_total, agent.disk_other = 2000, 1900
    report = await image_gc.collect(ctl, NOW_ONLY)
    assert report.deleted == [] and await _ids(client) == {image_id(1)}
