"""Layers through a real overlayfs mount: whiteouts, opaque directories, many layers, unmounting."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore, is_mounted, mount_overlay, unmount
from atoll.agent.images.overlay import mount_overlay_legacy
from atoll.model.errors import RuntimeFailure
from tests.images.conftest import Mounter
from tests.images.factory import (
    Image,
    chunks,
    directory,
    docker_save,
    file,
    layer,
    oci_layout,
    opaque,
    pack,
    whiteout,
)

BOTTOM = layer(
    file("etc/keep", b"keep"),
    file("etc/gone", b"gone"),
    directory("var/cache"),
    file("var/cache/old1", b"1"),
    file("var/cache/sub/old2", b"2"),
    file("bin/tool", b"v1"),
)
MIDDLE = layer(
    whiteout("etc/gone"),
    opaque("var/cache"),
    file("var/cache/new", b"new"),
    file("bin/tool", b"v2"),
    file("etc/added", b"added"),
)
TOP = layer(whiteout("bin/tool"), whiteout("etc/never-existed"), file("top", b"top"))


def test_whiteouts_and_opaque_dirs(store: ImageStore, overlay: Mounter) -> None:
    image = Image([BOTTOM, MIDDLE, TOP])
    asyncio.run(store.import_archive(chunks(pack(oci_layout(image)))))
    middle = store.layer_dirs(image.diff_ids)[1]
    assert os.stat(middle / "etc/gone", follow_symlinks=False).st_rdev == os.makedev(0, 0)
    assert os.getxattr(middle / "var/cache", "trusted.overlay.opaque") == b"y"

    root = overlay(store.layer_dirs(image.diff_ids))
    assert is_mounted(root)
    assert (root / "etc/keep").read_bytes() == b"keep"
    assert not (root / "etc/gone").exists(), "a whiteout deletes the lower file"
    assert (root / "etc/added").read_bytes() == b"added"
    assert sorted(os.listdir(root / "var/cache")) == ["new"], "an opaque dir hides lower content"
    assert not (root / "bin/tool").exists(), "the top layer deleted what the middle one changed"
    assert not (root / "etc/never-existed").exists()
    assert sorted(os.listdir(root)) == ["bin", "etc", "top", "var"]

    two = overlay(store.layer_dirs(image.diff_ids[:2]))
    assert (two / "bin/tool").read_bytes() == b"v2", "lowers are given bottom first"
    (two / "written").write_bytes(b"to the upper dir")
    assert not any((d / "written").exists() for d in store.layer_dirs(image.diff_ids))


def test_whiteout_of_a_directory(store: ImageStore, overlay: Mounter) -> None:
    image = Image([layer(file("d/a", b"a"), file("d/b/c", b"c")), layer(whiteout("d"))])
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    root = overlay(store.layer_dirs(image.diff_ids))
    assert not (root / "d").exists()


def test_many_layers(store: ImageStore, overlay: Mounter) -> None:
    """More layers than one page of mount options could name: ``lowerdir+`` has no such limit."""
    layers = [layer(file(f"layer{i}", str(i).encode()), file("which", str(i).encode())) for i in range(120)]
    image = Image(layers)
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    dirs = store.layer_dirs(image.diff_ids)
    assert len(":".join(map(str, dirs))) > 4096
    root = overlay(dirs)
    assert (root / "which").read_bytes() == b"119"
    assert (root / "layer0").read_bytes() == b"0"


def test_legacy_mount_uses_short_fd_names(store: ImageStore, tmp_path: Path) -> None:
    layers = [layer(file("which", str(i).encode())) for i in range(100)]
    image = Image(layers)
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    top_first = [str(p) for p in reversed(store.layer_dirs(image.diff_ids))]
    upper, work, merged = (tmp_path / x for x in ("u", "w", "m"))
    for d in (upper, work, merged):
        d.mkdir()
    mount_overlay_legacy(top_first, str(upper), str(work), str(merged))
    try:
        assert (merged / "which").read_bytes() == b"99"
    finally:
        unmount(merged)
    with pytest.raises(RuntimeFailure, match="at most"):
        mount_overlay_legacy(top_first * 3, str(upper), str(work), str(merged))
    assert not is_mounted(merged)


def test_unmount_is_idempotent_and_detaches_busy_mounts(store: ImageStore, tmp_path: Path) -> None:
    image = Image([layer(file("f", b"x"))])
    asyncio.run(store.import_archive(chunks(pack(docker_save(image)))))
    upper, work, merged = (tmp_path / x for x in ("u", "w", "m"))
    for d in (upper, work, merged):
        d.mkdir()
    mount_overlay(store.layer_dirs(image.diff_ids), upper, work, merged)
    busy = os.open(merged / "f", os.O_RDONLY)
    try:
        unmount(merged)
        assert not is_mounted(merged)
    finally:
        os.close(busy)
    unmount(merged)
    unmount(tmp_path / "does-not-exist")
    assert not is_mounted(tmp_path / "does-not-exist")


def test_mount_errors_are_clear(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="at least one lower"):
        mount_overlay([], tmp_path, tmp_path, tmp_path)
    missing = tmp_path / "missing"
    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    (tmp_path / "m").mkdir()
    with pytest.raises(RuntimeFailure, match="overlay mount"):
        mount_overlay([missing], tmp_path / "u", tmp_path / "w", tmp_path / "m")
    assert not is_mounted(tmp_path / "m")
