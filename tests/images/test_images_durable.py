"""Imports return before their layers' sync (durable.py); what depends on the data waits for it; a
store reopened after a "crash" before the sync ended discards that import and keeps the durable ones.

A crash is simulated by holding the sync (``Gate``), then opening a second store on the same root, as
the agent does when it starts again; the first store's sync is then failed, as a dead process's is.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.images.durable import ADOPTED, MARK
from atoll.model.errors import RuntimeFailure
from atoll.model.image import ImageRecord
from tests.images.factory import Image, chunks, docker_save, file, layer, pack

BASE = layer(file("base/file", b"shared by both images"))
ONE = layer(file("one/file", b"only in the first"))
TWO = layer(file("two/file", b"only in the second"))


class Gate:
    """Replaces a store's sync: each call waits until the test opens the gate (or 'crashes' it)."""

    def __init__(self, store: ImageStore) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.crashed = False
        self.calls = 0
        self._real = store.durability.sync
        store.durability.sync = self._sync

    def _sync(self, root: Path) -> None:
        self.calls += 1
        self.entered.set()
        assert self.open.wait(30), "the test never opened the gate"
        if self.crashed:
            raise OSError("simulated crash: this sync never finished")
        self._real(root)

    def release(self) -> None:
        self.open.set()

    def crash(self) -> None:
        self.crashed = True
        self.open.set()


@pytest.fixture
def gated(store: ImageStore) -> Iterator[Gate]:
    gate = Gate(store)
    yield gate
    gate.release()  # never leave the store's thread waiting
    assert store.durability.settle(10)


def load(store: ImageStore, image: Image) -> ImageRecord:
    [record] = asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    return record


def marked(store: ImageStore, diff_id: str) -> bool:
    return (store.root / "layers" / diff_id.removeprefix("sha256:") / MARK).exists()


def test_an_import_returns_before_its_sync_and_is_marked_after(store: ImageStore, gated: Gate) -> None:
    record = load(store, Image([BASE, ONE]))
    assert gated.entered.wait(10), "the sync starts at once, in the background"
    assert store.get(record.id) is not None  # recorded and listed at once
    assert not store.is_durable(record.layers)
    assert not any(marked(store, d) for d in record.layers)
    gated.release()
    assert store.durability.settle(10)
    assert store.is_durable(record.layers)
    assert all(marked(store, d) for d in record.layers)


def test_waiting_for_durability_blocks_until_the_sync_ends(store: ImageStore, gated: Gate) -> None:
    record = load(store, Image([BASE, ONE]))

    async def scenario() -> None:
        waiter = asyncio.ensure_future(store.wait_durable(record.layers))
        await asyncio.sleep(0.3)
        assert not waiter.done(), "a container create would have overlaid layers not yet on disk"
        gated.release()
        await asyncio.wait_for(waiter, 10)

    asyncio.run(scenario())
    assert store.is_durable(record.layers)


def test_save_and_push_wait_for_the_sync(store: ImageStore, gated: Gate) -> None:
    record = load(store, Image([BASE, ONE], tags=["one:1"]))

    async def scenario() -> bytes:
        async def save() -> bytes:
            return b"".join([c async for c in store.export({record.id: ["one:1"]})])

        saving = asyncio.ensure_future(save())
        pushing = asyncio.ensure_future(asyncio.to_thread(store.push_source, record.id))
        await asyncio.sleep(0.3)
        assert not saving.done() and not pushing.done()
        gated.release()
        source = await asyncio.wait_for(pushing, 10)
        assert [k.digest for k in source.layers]  # the kept blobs, readable now
        return await asyncio.wait_for(saving, 10)

    archive = asyncio.run(scenario())
    assert len(archive) > 1024


def test_imports_waiting_for_a_sync_share_the_next_one(store: ImageStore, gated: Gate) -> None:
    first = load(store, Image([BASE, ONE]))
    assert gated.entered.wait(10)  # the first sync is under way (held)
    second = load(store, Image([TWO]))
    third = load(store, Image([layer(file("three", b"3"))]))
    gated.release()
    assert store.durability.settle(10)
    assert store.is_durable(first.layers + second.layers + third.layers)
    assert gated.calls == 4, "two rounds of (sync, sync of the marks): the later imports shared one"


def test_a_sync_that_fails_fails_the_waiters(store: ImageStore, gated: Gate) -> None:
    record = load(store, Image([BASE, ONE]))
    gated.crash()
    with pytest.raises(RuntimeFailure, match="could not be written to disk"):
        store.durability.wait(record.layers, timeout=10)
    assert not store.is_durable(record.layers)


def test_removing_an_image_while_its_sync_is_held(store: ImageStore, gated: Gate) -> None:
    record = load(store, Image([BASE, ONE]))
    store.remove(record.id)
    gated.release()
    assert store.durability.settle(10)
    assert list((store.root / "layers").iterdir()) == []
    assert list((store.root / "images").iterdir()) == []
    store.durability.wait(record.layers, timeout=1)  # nothing to wait for: the layers are gone


def test_a_crash_before_the_sync_discards_that_import_only(store: ImageStore) -> None:
    first = load(store, Image([BASE, ONE], tags=["one:1"]))
    assert store.durability.settle(10) and store.is_durable(first.layers)
    gate = Gate(store)
    second = load(store, Image([BASE, TWO], tags=["two:1"]))  # shares BASE, brings TWO and a config
    assert gate.entered.wait(10)

    reopened = ImageStore(store.root)  # the agent starting again after the host stopped
    gate.crash()
    assert store.durability.settle(10)

    assert [r.id for r in reopened.list()] == [first.id]
    assert reopened.is_durable(first.layers)
    layers = {p.name for p in (store.root / "layers").iterdir()}
    assert layers == {d.removeprefix("sha256:") for d in first.layers}, "TWO went, BASE stayed"
    assert not (store.root / "blobs" / "sha256" / second.id.removeprefix("sha256:")).exists()
    assert not (store.root / "images" / f"{second.id.removeprefix('sha256:')}.json").exists()
    assert list((store.root / "tmp").iterdir()) == []
    # the first image is whole and usable; the second pulls again as new
    assert (reopened.layer_dirs(first.layers)[1] / "one/file").read_bytes() == b"only in the first"
    again = load(reopened, Image([BASE, TWO], tags=["two:1"]))
    assert again.id == second.id
    assert reopened.durability.settle(10) and reopened.is_durable(again.layers)


def test_an_empty_record_left_by_a_crash_is_removed(store: ImageStore) -> None:
    first = load(store, Image([BASE, ONE]))
    assert store.durability.settle(10)
    empty = store.root / "images" / ("ab" * 32 + ".json")
    empty.write_bytes(b"")
    reopened = ImageStore(store.root)
    assert not empty.exists()
    assert [r.id for r in reopened.list()] == [first.id]


def test_a_store_from_before_the_marks_is_adopted(store: ImageStore) -> None:
    record = load(store, Image([BASE, ONE]))
    assert store.durability.settle(10)
    for diff_id in record.layers:  # what a store written by the previous version looks like
        (store.root / "layers" / diff_id.removeprefix("sha256:") / MARK).unlink()
    (store.root / ADOPTED).unlink()
    reopened = ImageStore(store.root)
    assert [r.id for r in reopened.list()] == [record.id]
    assert reopened.is_durable(record.layers)
    assert json.loads((store.root / "images" / f"{record.id.removeprefix('sha256:')}.json").read_bytes())


def test_an_orderly_stop_waits_for_the_last_sync(store: ImageStore, gated: Gate) -> None:
    """The agent's close() settles the store: a pull just before a restart is not discarded by it."""
    record = load(store, Image([BASE, ONE]))
    assert gated.entered.wait(10)
    assert asyncio.run(store.settle(0.2)) is False  # the sync is still held: the stop would wait
    threading.Timer(0.2, gated.release).start()
    assert asyncio.run(store.settle(10)) is True
    assert all(marked(store, d) for d in record.layers)


def test_a_new_record_on_durable_layers_is_synced_too(store: ImageStore, gated: Gate) -> None:
    """A second image made only of layers already on disk (a new tag of a pulled base, say) brings no
    layer to mark, but its record must reach the disk as well: a sync runs for it."""
    gated.release()
    load(store, Image([BASE]))
    assert store.durability.settle(10)
    before = gated.calls
    load(store, Image([BASE], cmd=["other"]))  # another config, the same layer
    assert store.durability.settle(10)
    assert gated.calls == before + 1, "one sync for the record, none for marks"
