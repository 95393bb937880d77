"""The heap keeper of long-running processes (atoll/heap.py): it frees garbage cycles and gives free
malloc pages back, and freezing the start-up's objects keeps them alive."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from atoll import heap


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.peer, b.peer = b, a
    return weakref.ref(a)


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    """Only the code under test collects, so a freed cycle is its doing."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_trim_frees_cycles(no_automatic_gc: None) -> None:
    ref = cycle()
    assert ref() is not None  # a cycle outlives its last outside reference
    heap.trim()
    assert ref() is None


def test_frozen_objects_stay_alive_and_later_cycles_are_still_freed(
    no_automatic_gc: None, unfreeze: None
) -> None:
    kept = Node()
    kept.peer = kept
    ref = weakref.ref(kept)
    assert heap.settle_after_startup() > 0
    del kept
    later = cycle()
    heap.trim()
    assert ref() is not None  # frozen at start-up: never collected
    assert later() is None


def test_arena_cap_is_accepted() -> None:
    assert heap.limit_malloc_arenas()  # glibc on this machine


def test_keeper_collects_after_allocation() -> None:
    """A cycle that has reached the oldest generation is freed by the keeper once the process allocates
    (young collections alone never free it)."""

    async def scenario() -> None:
        keeper = asyncio.create_task(heap.keep_heap_small(0.05))
        try:
            a = Node()
            a.peer = a
            ref = weakref.ref(a)
            gc.collect(1)
            gc.collect(1)  # survived twice: now in the oldest generation
            del a
            for _ in range(50):
                _ = [Node() for _ in range(2000)]  # work, so young collections happen
                if ref() is None:
                    break
                await asyncio.sleep(0.02)
            assert ref() is None
        finally:
            keeper.cancel()

    asyncio.run(scenario())
