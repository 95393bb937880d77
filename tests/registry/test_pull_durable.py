"""A pull from a real registry returns before its layers' sync ends; a push of it waits for the sync."""

from __future__ import annotations

import asyncio

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.registry.service import Registries
from tests.images.test_images_durable import Gate
from tests.registry.helpers import image_of, pulled, pushed, random_layer
from tests.registry.server import Registry, upload

pytestmark = pytest.mark.anyio


async def test_a_pull_returns_before_the_sync_and_a_push_waits_for_it(
    registry: Registry, store: ImageStore, registries: Registries
) -> None:
    image = image_of(random_layer("one"), random_layer("two"))
    upload(registry, "team/durable", "1", image)
    gate = Gate(store)
    try:
        result, _ = await asyncio.wait_for(pulled(registries.pull(f"{registry.host}/team/durable:1", {})), 30)
        assert result.record.id == image.id
        # The sync starts in the background as the pull returns; its thread may not have run yet.
        assert await asyncio.to_thread(gate.entered.wait, 10), "the sync never started"
        assert not store.is_durable(result.record.layers)

        pushing = asyncio.ensure_future(pushed(registries.push(image.id, f"{registry.host}/team/copy:1", {})))
        await asyncio.sleep(0.5)
        assert not pushing.done(), "the push read layers not yet on disk"
        gate.release()
        done, _ = await asyncio.wait_for(pushing, 30)
        assert done.digest.startswith("sha256:")
        assert store.is_durable(result.record.layers)
    finally:
        gate.release()
        assert await asyncio.to_thread(store.durability.settle, 10)
