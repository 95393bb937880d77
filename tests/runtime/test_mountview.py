"""mountview: a stopped instance's root with its volumes mounted, private, and gone afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atoll.agent.mountview import ViewMount, mount_view


def _mounted_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def test_view_mounts_volumes_inside_the_root_and_leaves_nothing(tmp_path: Path) -> None:
    rootfs, vol, ro, host = (tmp_path / n for n in ("rootfs", "vol", "ro", "host"))
    for d in (rootfs / "data", vol, ro, host):
        d.mkdir(parents=True)
    (vol / "v.txt").write_text("volume\n")
    (ro / "r.txt").write_text("read-only\n")
    # The instance's own symlink aims its mount point at the host: it must stay inside the view.
    os.symlink(f"/../../../..{host}", rootfs / "escape")
    mounts = [
        ViewMount("/data", vol),
        ViewMount("/data/nested/ro", ro, readonly=True),
        ViewMount("/escape", vol),
    ]
    view = tmp_path / "view"
    with mount_view(rootfs, view, mounts) as root:
        assert (root / "data" / "v.txt").read_text() == "volume\n"
        assert (root / "data" / "nested" / "ro" / "r.txt").read_text() == "read-only\n"
        with pytest.raises(OSError, match="Read-only"):
            (root / "data" / "nested" / "ro" / "new").write_text("no")
        (root / "data" / "written").write_text("through the view\n")
        assert list(host.iterdir()) == []  # the link's target inside the view got the mount
    assert (vol / "written").read_text() == "through the view\n"
    assert (vol / "nested").is_dir()  # the missing mount point was made, inside the volume
    assert not view.exists()
    assert _mounted_under(tmp_path) == []
    assert not (rootfs / "data" / "v.txt").exists()  # nothing was copied into the root
