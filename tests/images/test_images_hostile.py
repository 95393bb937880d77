"""Hostile and broken archives: each fails with BadImage, writes nothing outside the store, and leaves the
store exactly as it was (no partial layer, record, temp file or blob), keeping layers of other images.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore
from atoll.model.errors import BadImage
from atoll.model.image import ImageConfig
from tests.images.factory import (
    Image,
    Member,
    chardev,
    chunks,
    directory,
    docker_save,
    file,
    gz,
    hardlink,
    hexof,
    layer,
    oci_layout,
    pack,
    symlink,
    tree,
    unpack_to,
)

GOOD = layer(file("good/file", b"fine"))
"""A layer of an image imported before each attack: it must survive every failure."""


@pytest.fixture
def seeded(store: ImageStore) -> ImageStore:
    asyncio.run(store.import_archive(chunks(pack(docker_save(Image([GOOD], tags=["good:1"]))))))
    assert store.durability.settle()  # its durable mark is made now, not during the attack
    return store


def attempt(store: ImageStore, tmp_path: Path, archive: bytes, match: str) -> BadImage:
    """Import ``archive``; it must fail with BadImage and change nothing anywhere under tmp_path."""
    before = tree(tmp_path)
    with pytest.raises(BadImage, match=match) as info:
        asyncio.run(store.import_archive(chunks(archive)))
    assert tree(tmp_path) == before
    return info.value


def hostile_layer(*members: Member) -> bytes:
    """A docker save archive whose second layer is ``members`` (after a fresh, valid first layer)."""
    first = layer(file("fresh/first", b"unpacked before the bad layer"))
    return pack(docker_save(Image([first, GOOD, layer(*members)])))


def pax_named(name: str) -> Member:
    """A member whose PAX ``path`` record says ``name`` (it can hold bytes a ustar name can't)."""

    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("placeholder")
        info.pax_headers = {"path": name}
        tar.addfile(info, io.BytesIO(b""))

    return add


HOSTILE: dict[str, tuple[Callable[[Path], list[Member]], str]] = {
    "dotdot": (lambda c: [file("../../etc/x", b"pwned")], r"'\.\.' in a path"),
    "dotdot-deep": (lambda c: [directory("a"), file("a/../../../x", b"pwned")], r"'\.\.' in a path"),
    "dotdot-in-abs": (lambda c: [file("/abs/../../x", b"pwned")], r"'\.\.' in a path"),
    "symlink-parent-abs": (
        lambda c: [symlink("evil", str(c)), file("evil/pwned", b"pwned")],
        "parent evil is a symlink",
    ),
    "symlink-parent-rel": (
        lambda c: [symlink("evil", "../../../../../../../../" + str(c)), file("evil/pwned", b"x")],
        "parent evil is a symlink",
    ),
    "symlink-parent-deep": (
        lambda c: [directory("d"), symlink("d/evil", str(c)), directory("d/evil/sub")],
        "parent d/evil is a symlink",
    ),
    "symlink-then-hardlink-through-it": (
        lambda c: [symlink("evil", str(c)), hardlink("x", "evil/keep")],
        "parent evil is a symlink",
    ),
    "hardlink-to-host-file": (
        lambda c: [hardlink("passwd", "/etc/passwd")],
        "etc/passwd is not in this layer",
    ),
    "hardlink-to-canary": (lambda c: [hardlink("k", str(c / "keep"))], "is not in this layer"),
    "hardlink-dotdot": (lambda c: [hardlink("x", "../x")], r"'\.\.' in a path"),
    "hardlink-to-dir": (lambda c: [directory("d"), hardlink("x", "d")], "not a regular file or symlink"),
    "char-device": (lambda c: [chardev("dev/mem", 1, 1)], "device nodes are not allowed"),
    "whiteout-device-as-device": (lambda c: [chardev("gone", 0, 0)], "device nodes are not allowed"),
    "file-as-parent": (lambda c: [file("f", b"x"), file("f/g", b"y")], "parent f is not a directory"),
    "nul-in-name": (lambda c: [pax_named("a\x00b")], "NUL byte in name"),
    "name-too-long": (lambda c: [pax_named("a/" * 2100 + "b")], "longer than 4096"),
    "too-deep": (lambda c: [pax_named("a/" * 300 + "b")], "more than 256 path components"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers(case: str, seeded: ImageStore, tmp_path: Path, canary: Path) -> None:
    members, match = HOSTILE[case]
    attempt(seeded, tmp_path, hostile_layer(*members(canary)), match)
    assert seeded.layer_dirs([Image([GOOD]).diff_ids[0]])


def test_absolute_names_stay_inside_the_layer(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    """Absolute member names are relative to the layer root (as in Docker): kept, but inside the layer."""
    image = Image([layer(file("/abs/path", b"inside"), file(str(canary / "x"), b"inside too"))])
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    (root,) = store.layer_dirs(image.diff_ids)
    assert (root / "abs/path").read_bytes() == b"inside"
    assert (root / str(canary / "x").lstrip("/")).read_bytes() == b"inside too"


def test_symlinks_are_stored_not_followed(store: ImageStore, canary: Path) -> None:
    image = Image([layer(symlink("to-canary", str(canary / "keep")), symlink("up", "../../../.."))])
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    (root,) = store.layer_dirs(image.diff_ids)
    assert (root / "to-canary").readlink() == canary / "keep"


def corrupt_archives() -> dict[str, tuple[bytes, str]]:
    img = Image([layer(file("a", b"a" * 5000)), layer(file("b", b"b" * 5000))], tags=["c:1"])
    first = f"{hexof(img.layers[0] + b'v1')}/layer.tar"
    second = f"{hexof(img.layers[1] + b'v1')}/layer.tar"
    config = f"{hexof(img.config_json())}.json"
    cases: dict[str, tuple[bytes, str]] = {}

    saved = docker_save(img)
    archive = pack(saved)
    cases["truncated-archive"] = (archive[: len(archive) // 2], "truncated")
    cases["empty-archive"] = (b"", "neither a docker save archive")
    cases["not-a-tar"] = (b"hello world, this is not an archive" * 40, "corrupt tar|neither")
    cases["corrupt-gzip-archive"] = (gz(archive)[:-40] + b"\0" * 40, "corrupt gzip")

    def with_(name: str, data: bytes) -> bytes:
        members = docker_save(img)
        members[name] = data
        return pack(members)

    cases["truncated-layer"] = (with_(second, img.layers[1][:1500]), "truncated|diff_id")
    cases["layer-digest-mismatch"] = (with_(second, layer(file("b", b"c" * 5000))), "digest mismatch")
    cases["corrupt-gzip-layer"] = (with_(second, gz(img.layers[1])[:30] + b"garbage" * 10), "corrupt gzip")
    cases["config-digest-mismatch"] = (with_(config, img.config_json() + b" "), "digest mismatch")
    cases["bad-manifest-json"] = (with_("manifest.json", b"[{"), "manifest.json: invalid JSON")
    cases["manifest-not-a-list"] = (with_("manifest.json", b"{}"), "non-empty list")
    cases["manifest-missing-layers"] = (
        with_("manifest.json", json.dumps([{"Config": config, "RepoTags": None}]).encode()),
        "missing Layers",
    )
    cases["manifest-missing-config"] = (with_("manifest.json", b'[{"Layers": []}]'), "missing Config")
    cases["layer-count-mismatch"] = (
        with_("manifest.json", json.dumps([{"Config": config, "Layers": [first]}]).encode()),
        "1 Layers but 2 diff_ids",
    )
    bad_config = Image(img.layers, extra_config={"rootfs": {"type": "layers", "diff_ids": ["md5:abc"]}})
    cases["bad-diff-id"] = (pack(docker_save(bad_config)), "unsupported digest algorithm")
    cases["bad-cmd-type"] = (pack(docker_save(Image(img.layers, extra_config={"config": {"Cmd": 5}}))), "Cmd")
    missing = docker_save(img)
    del missing[second]
    cases["missing-layer-blob"] = (pack(missing), "missing blob")

    oci = oci_layout(img)
    oci_index = json.loads(oci["index.json"])
    manifest_hex = oci_index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads(oci[f"blobs/sha256/{manifest_hex}"])
    layer_hex = manifest["layers"][1]["digest"].removeprefix("sha256:")

    def oci_with(name: str, data: bytes | None) -> bytes:
        members = oci_layout(img)
        if data is None:
            del members[name]
        else:
            members[name] = data
        return pack(members)

    cases["oci-missing-blob"] = (oci_with(f"blobs/sha256/{layer_hex}", None), "missing blob")
    cases["oci-missing-manifest"] = (oci_with(f"blobs/sha256/{manifest_hex}", None), "missing member")
    cases["oci-layer-digest-mismatch"] = (
        oci_with(f"blobs/sha256/{layer_hex}", gz(img.layers[0])),
        "digest mismatch|size",
    )
    cases["oci-corrupt-gzip-layer"] = (
        oci_with(
            f"blobs/sha256/{layer_hex}", b"\x1f\x8b" + b"\0" * (len(oci[f"blobs/sha256/{layer_hex}"]) - 2)
        ),
        "corrupt gzip|digest mismatch",
    )
    cases["oci-config-digest-mismatch"] = (
        oci_with(f"blobs/sha256/{hexof(img.config_json())}", img.config_json().replace(b"amd64", b"arm64")),
        "digest mismatch",
    )
    cases["oci-bad-layout"] = (
        oci_with("oci-layout", b'{"imageLayoutVersion": "2.0.0"}'),
        "imageLayoutVersion",
    )
    cases["oci-empty-index"] = (oci_with("index.json", b'{"schemaVersion": 2, "manifests": []}'), "no images")
    unsupported = dict(manifest, mediaType="application/vnd.example.thing+json")
    cases["oci-unsupported-media-type"] = (
        _oci_replacing_manifest(img, unsupported),
        "mediaType|unsupported media type",
    )
    layer_type = json.loads(json.dumps(manifest))
    layer_type["layers"][1]["mediaType"] = "application/vnd.example.layer+lz4"
    cases["oci-unsupported-layer-type"] = (_oci_replacing_manifest(img, layer_type), "unsupported media type")
    return cases


def _oci_replacing_manifest(img: Image, manifest: dict[str, object]) -> bytes:
    members = oci_layout(img)
    blob = json.dumps(manifest).encode()
    members[f"blobs/sha256/{hexof(blob)}"] = blob
    index = json.loads(members["index.json"])
    index["manifests"][0].update(digest=f"sha256:{hexof(blob)}", size=len(blob))
    index["manifests"][0].pop("mediaType", None)
    members["index.json"] = json.dumps(index).encode()
    return pack(members)


CORRUPT = corrupt_archives()


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_archives(case: str, seeded: ImageStore, tmp_path: Path) -> None:
    archive, match = CORRUPT[case]
    attempt(seeded, tmp_path, archive, match)


def test_failed_directory_import_leaves_nothing(seeded: ImageStore, tmp_path: Path) -> None:
    img = Image([layer(file("fresh", b"x")), layer(file("../escape", b"x"))])
    source = unpack_to(docker_save(img), tmp_path / "dir")
    before = tree(tmp_path)
    with pytest.raises(BadImage, match=r"'\.\.'"):
        asyncio.run(seeded.import_directory(source))
    assert tree(tmp_path) == before


def test_directory_refuses_names_escaping_it(seeded: ImageStore, tmp_path: Path, canary: Path) -> None:
    fresh = Image([layer(file("z", b"z"))])
    for i, name in enumerate(["../canary/keep", "link-out"]):
        members = docker_save(fresh)
        manifest = json.loads(members["manifest.json"])
        manifest[0]["Layers"] = [name]
        members["manifest.json"] = json.dumps(manifest).encode()
        source = unpack_to(members, tmp_path / f"dir{i}")
        (source / "link-out").symlink_to(canary / "keep")
        with pytest.raises(BadImage, match=f"missing blob {name}"):
            asyncio.run(seeded.import_directory(source))


def test_hostile_layer_rolls_back_layers_of_earlier_images(seeded: ImageStore, tmp_path: Path) -> None:
    """Two images in one archive: the first is fine, the second is hostile; neither may remain."""
    fine = Image([layer(file("fine", b"1"))], tags=["fine:1"])
    bad = Image([layer(file("../../bad", b"2"))], tags=["bad:1"])
    attempt(seeded, tmp_path, pack(docker_save(fine, bad)), r"'\.\.'")
    assert seeded.get(fine.id) is None


def test_build_from_hostile_rootfs(store: ImageStore, tmp_path: Path, canary: Path) -> None:
    before = tree(tmp_path)
    rootfs = layer(symlink("evil", str(canary)), file("evil/pwned", b"x"))
    with pytest.raises(BadImage, match="symlink"):
        asyncio.run(store.build(chunks(rootfs), ImageConfig()))
    with pytest.raises(BadImage, match="truncated"):
        asyncio.run(store.build(chunks(layer(file("a", b"a" * 2000))[:1024]), ImageConfig()))
    with pytest.raises(BadImage, match="truncated: no end-of-archive"):
        asyncio.run(store.build(chunks(layer(file("a", b"a" * 2000))[:2560]), ImageConfig()))
    assert tree(tmp_path) == before
