"""Fixtures for registry tests: a real registry on loopback, a fresh layer store, and a puller/pusher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.registry.options import RegistryOptions
from atoll.agent.registry.service import Registries
from tests.registry.server import Registry, running_registry


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "registry") as reg:
        yield reg


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


def options_for(*regs: Registry, **kw: object) -> RegistryOptions:
    return RegistryOptions(insecure=frozenset(r.host for r in regs if not r.tls), backoff=0.01, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def registries(store: ImageStore, registry: Registry) -> AsyncIterator[Registries]:
    regs = Registries(store, options_for(registry))
    try:
        yield regs
    finally:
        await regs.close()
