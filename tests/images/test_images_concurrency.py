"""Imports that overlap, fail together, or race a remove: the store stays consistent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.images.importer import ImportJob
from atoll.agent.images.plan import LayerPlan
from atoll.agent.images.sources import TarArchive
from atoll.model.errors import BadImage
from atoll.model.image import ImageConfig, ImageRecord
from tests.images.factory import Image, chunks, docker_save, file, hexof, layer, pack, tree

SHARED = layer(*(file(f"shared/{i}", bytes([i % 256]) * 20_000) for i in range(200)))


def layers_in(store: ImageStore) -> set[str]:
    return {f"sha256:{p.name}" for p in (store.root / "layers").iterdir()}


@pytest.mark.parametrize("attempt", range(3))
def test_good_and_bad_imports_sharing_a_fresh_layer(store: ImageStore, attempt: int) -> None:
    good = Image([SHARED, layer(file("good", b"g"))], tags=["good:1"])
    bad = Image([SHARED, layer(file("../bad", b"b"))], tags=["bad:1"])

    async def main() -> tuple[list[ImageRecord] | BaseException, list[ImageRecord] | BaseException]:
        return await asyncio.gather(
            store.import_archive(chunks(pack(docker_save(good)))),
            store.import_archive(chunks(pack(docker_save(bad)))),
            return_exceptions=True,
        )

    ok, failed = asyncio.run(main())
    assert isinstance(failed, BadImage)
    assert isinstance(ok, list) and all(isinstance(r, ImageRecord) for r in ok)
    assert [r.id for r in ok] == [good.id]
    assert layers_in(store) == set(good.diff_ids)
    assert list((store.root / "tmp").iterdir()) == []


def test_two_failing_imports_sharing_a_fresh_layer_leave_nothing(store: ImageStore, tmp_path: Path) -> None:
    before = tree(tmp_path)
    bad1 = Image([SHARED, layer(file("../one", b"1"))])
    bad2 = Image([SHARED, layer(file("x", b"2")), layer(file("../two", b"2"))])

    async def main() -> tuple[list[ImageRecord] | BaseException, list[ImageRecord] | BaseException]:
        return await asyncio.gather(
            store.import_archive(chunks(pack(docker_save(bad1)))),
            store.import_archive(chunks(pack(docker_save(bad2)))),
            return_exceptions=True,
        )

    assert all(isinstance(r, BadImage) for r in asyncio.run(main()))
    assert tree(tmp_path) == before


def test_remove_during_an_import_keeps_the_layers_it_uses(store: ImageStore, tmp_path: Path) -> None:
    """An import pins what it found; removing the only image using a layer must not pull it away."""
    old = Image([SHARED], tags=["old:1"])
    asyncio.run(store.import_archive(chunks(pack(docker_save(old)))))
    new = Image([SHARED, layer(file("new", b"n"))], tags=["new:1"])
    archive = tmp_path / "new.tar"
    archive.write_bytes(pack(docker_save(new)))
    scratch = store._layout.scratch("test-")
    job = ImportJob(store._layout, store._ledger, store.durability, scratch)
    src = TarArchive(archive, "archive")
    names = [f"{hexof(t + b'v1')}/layer.tar" for t in new.layers]
    sizes = [job.ensure_layer(src, LayerPlan(n, d)) for n, d in zip(names, new.diff_ids, strict=True)]
    store.remove(old.id)  # the import holds SHARED: it stays
    assert layers_in(store) == set(new.diff_ids)
    job.abort()  # and once the import is gone, only what it created goes
    assert layers_in(store) == {old.diff_ids[0]}
    assert sizes[0] == 200 * 20_000
    assert store.prune() == [old.diff_ids[0]]


def test_failing_stream_leaves_nothing(store: ImageStore, tmp_path: Path) -> None:
    before = tree(tmp_path)

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(store.import_archive(broken()))
    with pytest.raises(ConnectionResetError):
        asyncio.run(store.build(broken(), ImageConfig()))
    assert tree(tmp_path) == before
