"""Shared bits of the registry tests: images with random layers, and draining a transfer's events."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from atoll.agent.images import ImageStore
from atoll.agent.registry.options import RegistryOptions
from atoll.model.registry import Pulled, Pushed, TransferEvent
from tests.images import factory


def random_layer(name: str, size: int = 300_000) -> bytes:
    """Incompressible: its gzip blob is as large as the data, so a proxy can cut it mid-transfer."""
    return factory.layer(factory.file(name, os.urandom(size)))


def image_of(*layers: bytes, cmd: list[str] | None = None) -> factory.Image:
    return factory.Image(layers=list(layers), cmd=cmd or ["/bin/sh"])


def insecure(*hosts: str, **kw: object) -> RegistryOptions:
    return RegistryOptions(insecure=frozenset(hosts), backoff=0.01, **kw)  # type: ignore[arg-type]


async def pulled(events: AsyncIterator[TransferEvent | Pulled]) -> tuple[Pulled, list[TransferEvent]]:
    seen: list[TransferEvent] = []
    result: Pulled | None = None
    async for event in events:
        if isinstance(event, Pulled):
            result = event
        else:
            seen.append(event)
    assert result is not None
    return result, seen


async def pushed(events: AsyncIterator[TransferEvent | Pushed]) -> tuple[Pushed, list[TransferEvent]]:
    seen: list[TransferEvent] = []
    result: Pushed | None = None
    async for event in events:
        if isinstance(event, Pushed):
            result = event
        else:
            seen.append(event)
    assert result is not None
    return result, seen


def store_is_empty(store: ImageStore) -> bool:
    """No image, no layer, no blob, nothing in tmp/: what a failed first pull must leave."""
    root = store.root
    return not any(any((root / sub).iterdir()) for sub in ("images", "layers", "blobs/sha256", "tmp"))
