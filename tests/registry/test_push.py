"""Pushes to a real registry: round trips, blob mounts, HEAD checks, built images, refusals."""

from __future__ import annotations

import json

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.registry.service import Registries
from atoll.model.errors import BadImage, InvalidInput
from atoll.model.image import ImageConfig
from tests.images import factory
from tests.registry.helpers import image_of, insecure, pulled, pushed, random_layer
from tests.registry.proxy import Proxy
from tests.registry.server import Registry, upload

pytestmark = pytest.mark.anyio


async def test_push_then_pull_round_trip_with_mounts(
    registry: Registry, store: ImageStore, tmp_path: object
) -> None:
    image = image_of(random_layer("one"), random_layer("two"), random_layer("three"))
    digest = upload(registry, "team/source", "1", image)
    async with Proxy(registry.port) as proxy:
        regs = Registries(store, insecure(proxy.host))
        try:
            await pulled(regs.pull(f"{proxy.host}/team/source:1", {}))
            done, events = await pushed(regs.push(image.id, f"{proxy.host}/team/target:2", {}))
            assert done.digest == digest  # the pulled manifest, unchanged
            assert [e.status for e in events].count("Mounted from team/source") == 3
            assert not [r for r in proxy.requests if r[0] == "PUT" and "/blobs/uploads/" in r[1]]

            again, events = await pushed(regs.push(image.id, f"{proxy.host}/team/target:3", {}))
            assert [e.status for e in events].count("Layer already exists") == 3
            assert again.digest == digest
        finally:
            await regs.close()

    fresh = ImageStore(store.root.parent / "fresh")
    regs = Registries(fresh, insecure(registry.host))
    try:
        result, _ = await pulled(regs.pull(f"{registry.host}/team/target:2", {}))
    finally:
        await regs.close()
    assert result.record.id == image.id and result.digest == digest


async def test_a_built_image_is_pushed_as_a_new_manifest(registry: Registry, store: ImageStore) -> None:
    rootfs = factory.layer(factory.file("hello", b"built\n"))
    record = await store.build(factory.chunks(rootfs), ImageConfig(cmd=["cat", "/hello"]))
    regs = Registries(store, insecure(registry.host))
    try:
        done, events = await pushed(regs.push(record.id, f"{registry.host}/team/built:1", {}))
        assert "Pushed" in [e.status for e in events]
    finally:
        await regs.close()
    with registry.http() as client:
        manifest = json.loads(
            client.get("/v2/team/built/manifests/1", headers={"Accept": factory.OCI_MANIFEST}).content
        )
    assert manifest["config"]["digest"] == record.id
    assert manifest["layers"][0]["digest"] == factory.sha256(rootfs)
    assert factory.sha256(json.dumps(manifest).encode()) != "" and done.digest.startswith("sha256:")


@pytest.mark.parametrize("archive", ["docker-save", "oci-layout"])
async def test_a_loaded_image_is_pushed_and_pulled_back(
    registry: Registry, store: ImageStore, archive: str
) -> None:
    image = image_of(random_layer("base"), factory.layer(factory.file("etc/app", b"conf\n")))
    members = factory.docker_save(image) if archive == "docker-save" else factory.oci_layout(image)
    [record] = await store.import_archive(factory.chunks(factory.pack(members)))
    regs = Registries(store, insecure(registry.host))
    try:
        done, events = await pushed(regs.push(record.id, f"{registry.host}/team/loaded:1", {}))
        assert [e.status for e in events].count("Pushed") >= 2
    finally:
        await regs.close()
    fresh = ImageStore(store.root.parent / "fresh")
    regs = Registries(fresh, insecure(registry.host))
    try:
        result, _ = await pulled(regs.pull(f"{registry.host}/team/loaded:1", {}))
    finally:
        await regs.close()
    assert result.record.id == record.id == image.id and result.digest == done.digest
    assert (fresh.layer_dirs(image.diff_ids)[1] / "etc" / "app").read_bytes() == b"conf\n"


async def test_images_without_kept_blobs_and_digest_references_are_refused(
    registry: Registry, store: ImageStore
) -> None:
    image = factory.Image(layers=[factory.layer(factory.file("x", b"x"))])
    [record] = await store.import_archive(factory.chunks(factory.pack(factory.docker_save(image))))
    [layer_dir] = store.layer_dirs(image.diff_ids)
    (layer_dir.parent / "blob").unlink()  # as layers imported before blobs were kept
    regs = Registries(store, insecure(registry.host))
    try:
        with pytest.raises(BadImage, match="no kept blob"):
            await pushed(regs.push(record.id, f"{registry.host}/team/imported:1", {}))
        with pytest.raises(InvalidInput, match="digest"):
            await pushed(regs.push(record.id, f"{registry.host}/team/x@sha256:{'a' * 64}", {}))
    finally:
        await regs.close()
