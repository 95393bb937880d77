"""Volatile overlays (for ``--rm`` instances): mounted without syncing, and mountable again after a
clean unmount, through both mount paths."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore, is_mounted, mount_overlay, unmount
from atoll.agent.images.overlay import mount_overlay_legacy
from tests.images.factory import Image, chunks, docker_save, file, layer, pack


def _volatile(target: Path) -> bool:
    """Older kernels list ``volatile``, newer ones ``fsync=volatile``."""
    return bool({"volatile", "fsync=volatile"} & set(_options(target)))


def _options(target: Path) -> list[str]:
    path = os.fsencode(os.path.realpath(target))
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ")
            if fields[4] == path:
                return fields[-1].decode().strip().split(",")
    raise AssertionError(f"{target} is not mounted")


@pytest.mark.parametrize("legacy", [False, True])
def test_volatile_mount_is_volatile_and_mounts_again(store: ImageStore, tmp_path: Path, legacy: bool) -> None:
    image = Image([layer(file("f", b"x"))])
    asyncio.run(store.import_archive(chunks(pack_image(image))))
    lowers = store.layer_dirs(image.diff_ids)
    upper, work, merged = (tmp_path / x for x in ("u", "w", "m"))
    for d in (upper, work, merged):
        d.mkdir()

    def mount() -> None:
        if legacy:
            mount_overlay_legacy([str(p) for p in reversed(lowers)], str(upper), str(work), str(merged), True)
        else:
            mount_overlay(lowers, upper, work, merged, volatile=True)

    try:
        mount()
        assert _volatile(merged)
        (merged / "g").write_bytes(b"written")
        unmount(merged)
        assert (work / "work" / "incompat" / "volatile").exists(), "the kernel leaves its marker"
        # Mounting again clears the marker of that clean unmount (any path would refuse it otherwise).
        mount_overlay(lowers, upper, work, merged, volatile=True)
        assert (merged / "g").read_bytes() == b"written"
        assert (merged / "f").read_bytes() == b"x"
    finally:
        unmount(merged)
    assert not is_mounted(merged)


def test_plain_mount_is_not_volatile(store: ImageStore, tmp_path: Path) -> None:
    image = Image([layer(file("f", b"x"))])
    asyncio.run(store.import_archive(chunks(pack_image(image))))
    upper, work, merged = (tmp_path / x for x in ("u", "w", "m"))
    for d in (upper, work, merged):
        d.mkdir()
    mount_overlay(store.layer_dirs(image.diff_ids), upper, work, merged)
    try:
        assert not _volatile(merged)
    finally:
        unmount(merged)


def pack_image(image: Image) -> bytes:
    return pack(docker_save(image))
