"""Importing docker save archives and OCI layouts into the layer store, sharing layers, removing images."""

from __future__ import annotations

import asyncio
import bz2
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore
from atoll.model.errors import BadImage, NotFound
from tests.images.factory import (
    OCI_INDEX,
    Image,
    chunks,
    descriptor,
    directory,
    docker_save,
    fifo,
    file,
    gz,
    hardlink,
    hexof,
    layer,
    oci_layout,
    oci_manifest,
    pack,
    sha256,
    symlink,
    tree,
    unpack_to,
)

# CAP_NET_RAW in a version-2 file capability (struct vfs_cap_data): what `setcap cap_net_raw+ep` writes.
NET_RAW_CAP = "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12

BASE = layer(
    directory("etc", mode=0o755),
    file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
    directory("bin", mode=0o755, mtime=1_600_000_000),
    file("bin/tool", b"#!/bin/sh\necho tool\n", mode=0o4755, uid=0, gid=0),
    hardlink("bin/tool-link", "bin/tool"),
    symlink("bin/sh", "busybox"),
    file("bin/ping", b"ELF", mode=0o755, xattrs={"security.capability": NET_RAW_CAP}),
    file("data/owned", b"x", mode=0o2640, uid=1000, gid=2000, mtime=1_500_000_000),
    file(
        "data/attrs", b"y", xattrs={"user.note": "kept", "trusted.evil": "dropped", "security.selinux": "no"}
    ),
    fifo("run/pipe"),
)
APP = layer(file("app/main", b"print('hi')\n", mode=0o755))
OTHER = layer(file("other/file", b"other"))


def test_docker_save_import(store: ImageStore) -> None:
    image = Image([BASE, APP], tags=["example.com/app:1.0", "app:latest"])
    (record,) = asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    assert record.id == image.id
    assert record.repo_tags == ["example.com/app:1.0", "app:latest"]
    assert record.layers == image.diff_ids
    assert record.created == "2024-01-02T03:04:05Z"
    assert (record.architecture, record.os) == ("amd64", "linux")
    assert record.config.cmd == ["/bin/sh"] and record.config.labels == {"a": "b"}
    assert record.manifest_digest == ""
    assert record.size == 30 + 20 + 3 + 1 + 1 + 12, "bytes of regular files; the hard link counts once"
    assert store.get(record.id) == record
    assert store.get(record.id.removeprefix("sha256:")) == record
    assert store.list() == [record]


def test_layer_contents_and_metadata(store: ImageStore) -> None:
    image = Image([BASE])
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    (root,) = store.layer_dirs(image.diff_ids)
    tool = root / "bin/tool"
    st = tool.lstat()
    assert stat.S_IMODE(st.st_mode) == 0o4755, "setuid bits are kept"
    assert os.path.samestat(st, (root / "bin/tool-link").lstat())
    assert os.readlink(root / "bin/sh") == "busybox"
    owned = (root / "data/owned").lstat()
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (1000, 2000, 0o2640)
    assert owned.st_mtime == 1_500_000_000
    assert (root / "bin").stat().st_mtime == 1_600_000_000, "directory mtimes survive their children"
    assert stat.S_ISFIFO((root / "run/pipe").lstat().st_mode)
    assert os.getxattr(root / "bin/ping", "security.capability") == NET_RAW_CAP.encode()
    attrs = root / "data/attrs"
    assert os.listxattr(attrs) == ["user.note"]
    assert os.getxattr(attrs, "user.note") == b"kept"
    store_mode = stat.S_IMODE(store.root.stat().st_mode)
    assert store_mode == 0o700, "no host user may reach setuid files in the store"


def test_oci_archive_import(store: ImageStore) -> None:
    image = Image([BASE, APP], tags=["docker.io/library/app:1.0"])
    members = oci_layout(image)
    (record,) = asyncio.run(store.import_archive(chunks(pack(members))))
    assert record.id == image.id
    assert record.repo_tags == ["1.0"], "a bare ref.name is returned as is; the catalog normalizes"
    index = json.loads(members["index.json"])
    assert record.manifest_digest == index["manifests"][0]["digest"]
    blobs = {p.name for p in (store.root / "blobs/sha256").iterdir()}
    assert blobs == {image.id.removeprefix("sha256:"), record.manifest_digest.removeprefix("sha256:")}
    assert (store.layer_dirs(record.layers)[1] / "app/main").read_bytes() == b"print('hi')\n"


def test_oci_full_names_and_several_tags(store: ImageStore) -> None:
    image = Image([APP], tags=["docker.io/library/app:1.0", "docker.io/library/app:latest"])
    (record,) = asyncio.run(store.import_archive(chunks(pack(oci_layout(image, full_names=True)))))
    assert record.repo_tags == ["docker.io/library/app:1.0", "docker.io/library/app:latest"]


def test_oci_directory_import(store: ImageStore, tmp_path: Path) -> None:
    image = Image([BASE, APP], tags=["app:2"])
    layout = unpack_to(oci_layout(image), tmp_path / "layout")
    (record,) = asyncio.run(store.import_directory(layout))
    assert record.id == image.id and record.repo_tags == ["2"]
    assert [p.exists() for p in store.layer_dirs(image.diff_ids)] == [True, True]


def test_docker_save_directory_import(store: ImageStore, tmp_path: Path) -> None:
    image = Image([APP], tags=["app:3"])
    (record,) = asyncio.run(store.import_directory(unpack_to(docker_save(image), tmp_path / "saved")))
    assert record.repo_tags == ["app:3"]


def test_docker_25_save_has_manifest_digest(store: ImageStore) -> None:
    """Docker 25+ writes manifest.json into an OCI layout: tags from the former, digest from the latter."""
    image = Image([APP], tags=["app:25"])
    members = oci_layout(image)
    config_hex = hexof(image.config_json())
    manifest_digest = json.loads(members["index.json"])["manifests"][0]["digest"]
    manifest = json.loads(members[f"blobs/sha256/{manifest_digest.removeprefix('sha256:')}"])
    layer_names = [f"blobs/sha256/{d['digest'].removeprefix('sha256:')}" for d in manifest["layers"]]
    members["manifest.json"] = json.dumps(
        [{"Config": f"blobs/sha256/{config_hex}", "RepoTags": ["app:25"], "Layers": layer_names}]
    ).encode()
    (record,) = asyncio.run(store.import_archive(chunks(pack(members))))
    assert record.repo_tags == ["app:25"]
    assert record.manifest_digest == manifest_digest


def test_legacy_docker_save_symlinked_layers(store: ImageStore) -> None:
    """Old ``docker save`` stores a layer once and links other ``<id>/layer.tar`` members to it."""
    image = Image([APP])
    members = docker_save(image)
    manifest = json.loads(members["manifest.json"])
    manifest[0]["Layers"] = ["dup/layer.tar"]
    members["manifest.json"] = json.dumps(manifest).encode()
    archive = pack(members, symlinks={"dup/layer.tar": f"../{manifest_first_layer(image)}"})
    (record,) = asyncio.run(store.import_archive(chunks(archive)))
    assert record.layers == image.diff_ids


def manifest_first_layer(image: Image) -> str:
    return f"{hexof(image.layers[0] + b'v1')}/layer.tar"


def test_multi_platform_index_picks_host(store: ImageStore) -> None:
    amd64, arm64 = Image([APP], cmd=["amd64"]), Image([OTHER], cmd=["arm64"])
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    entries = []
    for image, arch in ((amd64, "amd64"), (arm64, "arm64")):
        manifest = oci_manifest(members, image)
        entries.append(
            descriptor(
                "application/vnd.oci.image.manifest.v1+json",
                manifest,
                platform={"os": "linux", "architecture": arch},
            )
        )
    attestation = oci_manifest(members, Image([OTHER], cmd=["attest"]))
    entries.append(
        descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            attestation,
            platform={"os": "unknown", "architecture": "unknown"},
            annotations={"vnd.docker.reference.type": "attestation-manifest"},
        )
    )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    members[f"blobs/sha256/{hexof(index)}"] = index
    top = descriptor(OCI_INDEX, index, annotations={"io.containerd.image.name": "docker.io/library/multi:1"})
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    del members[f"blobs/sha256/{hexof(gz(OTHER))}"]  # other platforms' blobs may be absent
    (record,) = asyncio.run(store.import_archive(chunks(pack(members))))
    host = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    assert record.config.cmd == [host]
    assert record.repo_tags == ["docker.io/library/multi:1"]
    assert record.manifest_digest == sha256(index), "the digest the tag points at: the index"


def test_compressed_outer_archives(store: ImageStore) -> None:
    image = Image([APP], tags=["app:gz"])
    (record,) = asyncio.run(store.import_archive(chunks(gz(pack(docker_save(image))))))
    assert record.id == image.id
    other = Image([OTHER], tags=["other:bz2"])
    (record,) = asyncio.run(store.import_archive(chunks(bz2.compress(pack(oci_layout(other))))))
    assert record.id == other.id


def test_gzip_layers_in_docker_save(store: ImageStore) -> None:
    image = Image([APP])
    members = docker_save(image)
    name = manifest_first_layer(image)
    members[name] = gz(members[name])
    (record,) = asyncio.run(store.import_archive(chunks(pack(members))))
    assert record.layers == image.diff_ids


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def zstd_layout(image: Image) -> dict[str, bytes]:
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    manifest = oci_manifest(members, image, compress=zstd, layer_type=ZSTD_LAYER)
    entry = descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
    return members


ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
needs_zstd = pytest.mark.skipif(
    shutil.which("zstd") is None, reason="zstd layers need the zstd command (Debian: zstd)"
)


@needs_zstd
def test_zstd_layers(store: ImageStore, tmp_path: Path) -> None:
    image = Image([BASE, APP])
    (record,) = asyncio.run(store.import_archive(chunks(pack(zstd_layout(image)))))
    assert (store.layer_dirs(record.layers)[1] / "app/main").exists()
    store.remove(record.id)

    members = zstd_layout(image)
    blob = zstd(APP)
    corrupt = blob[:8] + b"\xff" * 16 + blob[24:]
    members[f"blobs/sha256/{hexof(blob)}"] = corrupt
    before = tree(tmp_path)
    with pytest.raises(BadImage, match=r"corrupt zstd data|digest mismatch"):
        asyncio.run(store.import_archive(chunks(pack(members))))
    assert tree(tmp_path) == before


@needs_zstd
def test_zstd_archive(store: ImageStore) -> None:
    image = Image([APP], tags=["app:zst"])
    (record,) = asyncio.run(store.import_archive(chunks(zstd(pack(docker_save(image))))))
    assert record.id == image.id


def test_zstd_without_the_command(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)  # what compression.py asks for zstd
    image = Image([APP])
    members: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    manifest = oci_manifest(members, image, compress=lambda b: b"\x28\xb5\x2f\xfd" + b, layer_type=ZSTD_LAYER)
    entry = descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
    with pytest.raises(BadImage, match="zstd layers need the zstd command"):
        asyncio.run(store.import_archive(chunks(pack(members))))
    assert list((store.root / "layers").iterdir()) == []


def test_shared_layers_are_unpacked_once_and_survive_removal(store: ImageStore) -> None:
    one, two = Image([BASE, APP], tags=["one:1"]), Image([BASE, OTHER], tags=["two:1"])
    asyncio.run(store.import_archive(chunks(pack(docker_save(one)))))
    base_dir = store.layer_dirs(one.diff_ids[:1])[0]
    marker = os.stat(base_dir).st_ino
    asyncio.run(store.import_archive(chunks(pack(oci_layout(two)))))
    assert os.stat(store.layer_dirs(two.diff_ids[:1])[0]).st_ino == marker, "the base layer was reused"
    assert len(list((store.root / "layers").iterdir())) == 3

    store.remove(one.id)
    assert store.get(one.id) is None and store.get(two.id) is not None
    assert store.layer_dirs(two.diff_ids)  # the shared base is still there
    with pytest.raises(NotFound, match=one.diff_ids[1]):
        store.layer_dirs(one.diff_ids)
    assert not (store.root / "blobs/sha256" / one.id.removeprefix("sha256:")).exists()

    store.remove(two.id)
    assert store.list() == []
    for sub in ("layers", "images", "blobs/sha256", "tmp"):
        assert list((store.root / sub).iterdir()) == [], sub
    store.remove(two.id)  # idempotent
    store.remove("sha256:" + "0" * 64)
    store.remove("not-an-id")


def test_remove_keeps_requested_layers_and_prune_collects_them(store: ImageStore) -> None:
    image = Image([BASE, APP])
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    store.remove(image.id, keep_layers=[image.diff_ids[1]])
    assert store.layer_dirs(image.diff_ids[1:])
    with pytest.raises(NotFound):
        store.layer_dirs(image.diff_ids[:1])
    assert store.prune(keep_layers=[image.diff_ids[1]]) == []
    assert store.prune() == [image.diff_ids[1]]
    assert list((store.root / "layers").iterdir()) == []


def test_one_archive_with_two_images_sharing_a_base(store: ImageStore) -> None:
    one, two = Image([BASE, APP], tags=["one:1"]), Image([BASE, OTHER], tags=["two:1"])
    records = asyncio.run(store.import_archive(chunks(pack(docker_save(one, two)))))
    assert [r.id for r in records] == [one.id, two.id]
    assert len(list((store.root / "layers").iterdir())) == 3


def test_reimport_adds_tags_and_reopen_keeps_everything(store: ImageStore, tmp_path: Path) -> None:
    asyncio.run(store.import_archive(chunks(pack(docker_save(Image([APP], tags=["app:1"]))))))
    (again,) = asyncio.run(store.import_archive(chunks(pack(docker_save(Image([APP], tags=["app:2"]))))))
    assert again.repo_tags == ["app:2"], "the import answers with the archive's own names"
    stored = store.get(again.id)
    assert stored is not None and stored.repo_tags == ["app:1", "app:2"]
    reopened = ImageStore(store.root)
    assert reopened.list() == store.list()
    assert reopened.layer_dirs(again.layers) == store.layer_dirs(again.layers)


def test_reopen_clears_tmp(store: ImageStore) -> None:
    litter = store.root / "tmp" / "import-crashed"
    (litter / "layer-1" / "diff").mkdir(parents=True)
    ImageStore(store.root)
    assert list((store.root / "tmp").iterdir()) == []


def test_concurrent_imports_of_the_same_layers(store: ImageStore) -> None:
    big = layer(*(file(f"f/{i}", os.urandom(4096)) for i in range(300)))
    images = [Image([big, layer(file("n", str(i).encode()))], tags=[f"img:{i}"]) for i in range(6)]

    async def main() -> list[str]:
        results = await asyncio.gather(*(store.import_archive(chunks(pack(docker_save(i)))) for i in images))
        return [r[0].id for r in results]

    assert asyncio.run(main()) == [i.id for i in images]
    assert len(list((store.root / "layers").iterdir())) == 7
    assert list((store.root / "tmp").iterdir()) == []
    for image in images:
        store.remove(image.id)
    assert list((store.root / "layers").iterdir()) == []


def test_event_loop_stays_responsive_during_import(store: ImageStore) -> None:
    big = layer(*(file(f"f/{i}", os.urandom(64 * 1024)) for i in range(400)))
    archive = pack(docker_save(Image([big])))

    async def main() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await store.import_archive(chunks(archive, 8 << 20))
        done.set()
        await task
        return ticks

    assert asyncio.run(main()) > 10


def test_layer_dirs_unknown(store: ImageStore) -> None:
    with pytest.raises(NotFound, match="sha256:" + "a" * 64):
        store.layer_dirs(["sha256:" + "a" * 64])
    with pytest.raises(NotFound):
        store.layer_dirs(["garbage"])
    assert store.layer_dirs([]) == []


def test_store_state_is_exactly_the_images(store: ImageStore) -> None:
    image = Image([APP])
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    names = set(tree(store.root))
    hexid = image.id.removeprefix("sha256:")
    diff = image.diff_ids[0].removeprefix("sha256:")
    assert f"images/{hexid}.json" in names and f"blobs/sha256/{hexid}" in names
    assert f"layers/{diff}/layer.json" in names and f"layers/{diff}/diff/app/main" in names
