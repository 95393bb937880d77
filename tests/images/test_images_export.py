"""Exporting stored images as ``docker save`` archives: the archive's shape, exact ids for layers whose
blob is kept, re-tarred layers (with whiteouts) for imported ones, and a round trip through import."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore
from atoll.model.errors import NotFound
from atoll.model.image import ImageConfig
from tests.images.factory import (
    Image,
    chunks,
    directory,
    docker_save,
    file,
    layer,
    opaque,
    pack,
    sha256,
    tree,
)
from tests.images.factory import whiteout as wh


def export(store: ImageStore, images: dict[str, list[str]]) -> bytes:
    async def run() -> bytes:
        out = b""
        async for chunk in store.export(images):
            out += chunk
        return out

    return asyncio.run(run())


def members(archive: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for m in tar:
            f = tar.extractfile(m)
            out[m.name] = f.read() if f else b""
    return out


def test_built_image_exports_with_its_own_id(store: ImageStore, tmp_path: Path) -> None:
    rootfs = layer(directory("bin"), file("bin/hello", b"hi\n", mode=0o755))
    record = asyncio.run(store.build(chunks(rootfs), ImageConfig(cmd=["/bin/hello"])))
    got = members(export(store, {record.id: ["hello:1"]}))
    assert {"manifest.json", "repositories", "index.json", "oci-layout"} <= set(got)
    [entry] = json.loads(got["manifest.json"])
    assert entry["RepoTags"] == ["hello:1"]
    assert entry["Config"] == f"blobs/sha256/{record.id.removeprefix('sha256:')}"
    assert sha256(got[entry["Config"]]) == record.id  # the kept blob gives back the exact layer tar
    [layer_name] = entry["Layers"]
    assert sha256(got[layer_name]) == record.layers[0]
    assert json.loads(got["repositories"]) == {"hello": {"1": record.layers[0].removeprefix("sha256:")}}
    index = json.loads(got["index.json"])
    assert index["manifests"][0]["annotations"] == {"io.containerd.image.name": "hello:1"}

    other = ImageStore(tmp_path / "other")
    [loaded] = asyncio.run(other.import_archive(chunks(export(store, {record.id: ["hello:1"]}))))
    assert loaded.id == record.id and loaded.repo_tags == ["hello:1"]


def test_imported_layers_are_retarred_with_whiteouts(store: ImageStore, tmp_path: Path) -> None:
    base = layer(
        directory("etc"), file("etc/a", b"a"), file("etc/b", b"b"), directory("d"), file("d/x", b"x")
    )
    top = layer(directory("etc"), wh("etc/a"), directory("d"), opaque("d"), file("d/y", b"y"))
    image = Image(layers=[base, top], tags=["multi:1"])
    [record] = asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))

    archive = export(store, {record.id: ["multi:1"]})
    other = ImageStore(tmp_path / "other")
    [again] = asyncio.run(other.import_archive(chunks(archive)))
    assert again.repo_tags == ["multi:1"]
    assert again.config == record.config
    # Same content, layer by layer: the whiteout and the opaque directory survive the round trip.
    for mine, theirs in zip(store.layer_dirs(record.layers), other.layer_dirs(again.layers), strict=True):
        assert tree(mine) == tree(theirs)
    # And the export of the re-imported image is stable (its layers now are the re-tarred ones).
    third = ImageStore(tmp_path / "third")
    [thrice] = asyncio.run(third.import_archive(chunks(export(other, {again.id: []}))))
    assert thrice.layers == again.layers and thrice.repo_tags == []


def test_export_of_an_unknown_image_fails_first(store: ImageStore) -> None:
    with pytest.raises(NotFound):
        store.export({"sha256:" + "0" * 64: []})
    assert list((store.root / "tmp").iterdir()) == []
