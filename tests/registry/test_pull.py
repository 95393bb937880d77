"""Pulls from a real registry on loopback into a real layer store."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.images.ocilayout import host_architecture
from atoll.agent.registry.service import Registries
from atoll.model.errors import BadImage, NotFound, RegistryError
from tests.images import factory
from tests.registry.helpers import image_of, insecure, pulled, random_layer, store_is_empty
from tests.registry.proxy import Proxy
from tests.registry.server import Registry, free_port, upload, upload_index

pytestmark = pytest.mark.anyio


def three_layers(tag: str = "x") -> factory.Image:
    return factory.Image(
        layers=[
            factory.layer(factory.file("a.txt", b"a" * 1000 + tag.encode())),
            factory.layer(factory.file("b.bin", bytes(range(256)) * 400)),
            factory.layer(factory.directory("etc"), factory.file("etc/motd", b"hi\n")),
        ]
    )


async def test_anonymous_pull_of_a_multi_layer_image(
    registries: Registries, registry: Registry, store: ImageStore
) -> None:
    image = three_layers()
    digest = upload(registry, "team/app", "1.0", image)
    result, events = await pulled(registries.pull(f"{registry.host}/team/app:1.0", {}))
    assert result.digest == digest
    assert result.record.id == image.id
    assert result.record.layers == image.diff_ids
    assert result.record.repo_tags == [f"{registry.host}/team/app:1.0"]
    assert result.record.manifest_digest == digest
    assert store.get(image.id) is not None
    dirs = store.layer_dirs(image.diff_ids)
    assert (dirs[2] / "etc" / "motd").read_bytes() == b"hi\n"
    statuses = {e.status for e in events}
    assert {"Downloading", "Download complete", "Extracting", "Pull complete"} <= statuses
    assert not any((store.root / "tmp").iterdir())


async def test_docker_schema2_manifest_and_pull_by_digest(
    registries: Registries, registry: Registry, store: ImageStore
) -> None:
    image = three_layers("docker")
    digest = upload(registry, "team/docker", "v2", image, docker=True)
    result, _ = await pulled(registries.pull(f"{registry.host}/team/docker@{digest}", {}))
    assert result.record.id == image.id and result.digest == digest
    assert result.record.repo_tags == []  # by digest: no tag to give it


async def test_a_manifest_list_yields_the_host_platform(
    registries: Registries, registry: Registry, store: ImageStore
) -> None:
    mine, other = three_layers("mine"), three_layers("other")
    foreign = "arm64" if host_architecture() != "arm64" else "amd64"
    index = upload_index(registry, "team/multi", "latest", {foreign: other, host_architecture(): mine})
    result, _ = await pulled(registries.pull(f"{registry.host}/team/multi", {}))
    assert result.record.id == mine.id
    assert result.digest == index
    assert store.get(other.id) is None


async def test_layers_already_present_are_not_fetched_again(registry: Registry, store: ImageStore) -> None:
    shared = [random_layer("base"), random_layer("lib")]
    first, second = image_of(*shared, random_layer("app1")), image_of(*shared, random_layer("app2"))
    upload(registry, "team/one", "1", first)
    upload(registry, "team/two", "1", second)
    async with Proxy(registry.port) as proxy:
        regs = Registries(store, insecure(proxy.host))
        try:
            await pulled(regs.pull(f"{proxy.host}/team/one:1", {}))
            before = len(proxy.blob_gets())
            _, events = await pulled(regs.pull(f"{proxy.host}/team/two:1", {}))
        finally:
            await regs.close()
    fetched = proxy.blob_gets()[before:]
    assert len(fetched) == 2  # the config and the one new layer
    assert [e.status for e in events].count("Already exists") == 2
    assert store.get(second.id) is not None


async def test_concurrent_pulls_of_one_image_share_one_download(
    registry: Registry, store: ImageStore
) -> None:
    image = image_of(random_layer("a", 2_000_000), random_layer("b", 2_000_000))
    upload(registry, "team/shared", "1", image)
    async with Proxy(registry.port) as proxy:
        regs = Registries(store, insecure(proxy.host))
        try:
            ref = f"{proxy.host}/team/shared:1"
            results = await asyncio.gather(*(pulled(regs.pull(ref, {})) for _ in range(3)))
        finally:
            await regs.close()
    assert {r.record.id for r, _ in results} == {image.id}
    assert len(proxy.blob_gets()) == 3  # one config, two layers: once each for all three pulls
    assert any(e.status.startswith("Waiting for a pull") for _, events in results for e in events)


async def test_concurrent_pulls_of_images_sharing_a_layer_download_it_once(
    registry: Registry, store: ImageStore
) -> None:
    base = random_layer("base", 1_500_000)
    first, second = image_of(base, random_layer("app1")), image_of(base, random_layer("app2"))
    upload(registry, "team/one", "1", first)
    upload(registry, "team/two", "1", second)
    base_digest = "sha256:" + hashlib.sha256(factory.gz(base)).hexdigest()
    async with Proxy(registry.port, pace=0.05) as proxy:  # ~1 s for the base layer: the pulls overlap
        regs = Registries(store, insecure(proxy.host))
        try:
            results = await asyncio.gather(
                pulled(regs.pull(f"{proxy.host}/team/one:1", {})),
                pulled(regs.pull(f"{proxy.host}/team/two:1", {})),
            )
        finally:
            await regs.close()
    assert [r.record.id for r, _ in results] == [first.id, second.id]
    assert len(proxy.blob_gets(base_digest)) == 1
    waited = [e for _, events in results for e in events if e.status == "Waiting"]
    assert [e.id for e in waited] == [base_digest.removeprefix("sha256:")[:12]]
    dirs = store.layer_dirs(second.diff_ids)
    assert (dirs[0] / "base").stat().st_size == 1_500_000


async def test_a_missing_tag_or_repository_is_not_found(
    registries: Registries, registry: Registry, store: ImageStore
) -> None:
    upload(registry, "team/app", "1", three_layers())
    with pytest.raises(NotFound, match="manifest unknown"):
        await pulled(registries.pull(f"{registry.host}/team/app:nope", {}))
    with pytest.raises(NotFound):
        await pulled(registries.pull(f"{registry.host}/team/absent:1", {}))
    with pytest.raises(NotFound):
        await pulled(registries.pull(f"{registry.host}/team/app@sha256:{'0' * 64}", {}))
    assert store_is_empty(store)


async def test_a_corrupted_layer_is_refused_and_nothing_is_left(
    registries: Registries, registry: Registry, store: ImageStore
) -> None:
    image = image_of(random_layer("ok"), random_layer("bad"))
    upload(registry, "team/corrupt", "1", image)
    with registry.http() as client:
        manifest = json.loads(
            client.get("/v2/team/corrupt/manifests/1", headers={"Accept": factory.OCI_MANIFEST}).content
        )
    blob = registry.blob_file(manifest["layers"][1]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(BadImage, match="digest mismatch"):
        await pulled(registries.pull(f"{registry.host}/team/corrupt:1", {}))
    assert store_is_empty(store)


async def test_a_registry_that_is_down_is_a_clear_error(store: ImageStore) -> None:
    port = free_port()
    regs = Registries(store, insecure(f"127.0.0.1:{port}", max_attempts=2))
    try:
        with pytest.raises(RegistryError, match="unreachable"):
            await pulled(regs.pull(f"127.0.0.1:{port}/team/app:1", {}))
    finally:
        await regs.close()
    assert store_is_empty(store)


async def test_an_interrupted_download_resumes_with_range(registry: Registry, store: ImageStore) -> None:
    image = image_of(random_layer("big", 3_000_000))
    upload(registry, "team/big", "1", image)
    async with Proxy(registry.port, cut_after=1_000_000, cuts=2) as proxy:
        regs = Registries(store, insecure(proxy.host))
        try:
            result, _ = await pulled(regs.pull(f"{proxy.host}/team/big:1", {}))
        finally:
            await regs.close()
    assert result.record.id == image.id
    gets = proxy.blob_gets()
    ranges = [h for _, _, h in gets if "range: bytes=" in h.lower()]
    assert len(ranges) == 2, gets
    assert store.layer_dirs(image.diff_ids)


async def test_an_interrupted_download_restarts_where_ranges_are_not_served(
    registry: Registry, store: ImageStore
) -> None:
    image = image_of(random_layer("big", 3_000_000))
    upload(registry, "team/big", "1", image)
    async with Proxy(registry.port, cut_after=1_000_000, cuts=2, no_ranges=True) as proxy:
        regs = Registries(store, insecure(proxy.host))
        try:
            result, _ = await pulled(regs.pull(f"{proxy.host}/team/big:1", {}))
        finally:
            await regs.close()
    assert result.record.id == image.id
    assert len(proxy.blob_gets()) == 4  # the config, then the layer three times: whole, each time
    assert (store.layer_dirs(image.diff_ids)[0] / "big").stat().st_size == 3_000_000
