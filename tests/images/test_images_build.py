"""Images built from a root filesystem tar, and the busybox starter image."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore, busybox_rootfs_tar
from atoll.model.errors import RuntimeFailure
from atoll.model.image import ImageConfig
from tests.images.conftest import Mounter
from tests.images.factory import chunks, file, gz, layer, sha256, symlink

CONFIG = ImageConfig(cmd=["/bin/sh"], env=["PATH=/bin"], labels={"built": "yes"}, exposed_ports=["80/tcp"])
ROOTFS = layer(file("bin/app", b"app", mode=0o755), symlink("bin/alias", "app"), file("etc/motd", b"hello\n"))
BUSYBOX = Path("/bin/busybox")


def test_build_from_rootfs_tar(store: ImageStore) -> None:
    record = asyncio.run(store.build(chunks(ROOTFS), CONFIG, created="2024-05-06T07:08:09Z"))
    assert record.layers == [sha256(ROOTFS)]
    assert record.repo_tags == [] and record.config == CONFIG and record.os == "linux"
    assert record.created == "2024-05-06T07:08:09Z" and record.size == 3 + 6
    assert store.get(record.id) == record
    config = json.loads((store.root / "blobs/sha256" / record.id.removeprefix("sha256:")).read_bytes())
    assert sha256((store.root / "blobs/sha256" / record.id.removeprefix("sha256:")).read_bytes()) == record.id
    assert config["rootfs"] == {"type": "layers", "diff_ids": record.layers}
    assert config["config"]["ExposedPorts"] == {"80/tcp": {}}
    (root,) = store.layer_dirs(record.layers)
    assert (root / "bin/app").read_bytes() == b"app"


def test_build_is_deterministic_and_accepts_gzip(store: ImageStore) -> None:
    one = asyncio.run(store.build(chunks(ROOTFS), CONFIG, created="2024-05-06T07:08:09Z"))
    two = asyncio.run(store.build(chunks(gz(ROOTFS), 100), CONFIG, created="2024-05-06T07:08:09Z"))
    assert one == two
    assert len(store.list()) == 1
    three = asyncio.run(store.build(chunks(ROOTFS), CONFIG))
    assert three.id != one.id and three.layers == one.layers
    assert len(list((store.root / "layers").iterdir())) == 1


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs /bin/busybox (Debian: busybox-static)")
def test_busybox_starter_image_runs(store: ImageStore, tmp_path: Path, overlay: Mounter) -> None:
    tar = tmp_path / "rootfs.tar"
    busybox_rootfs_tar(tar)
    again = tmp_path / "again.tar"
    busybox_rootfs_tar(again)
    assert tar.read_bytes() == again.read_bytes(), "the starter tar is deterministic"

    async def stream() -> AsyncIterator[bytes]:
        with open(tar, "rb") as f:
            while chunk := f.read(1 << 16):
                yield chunk

    record = asyncio.run(store.build(stream(), ImageConfig(cmd=["sh"]), created="2024-01-01T00:00:00Z"))
    (root,) = store.layer_dirs(record.layers)
    assert os.readlink(root / "bin/sh") == "busybox"
    assert os.access(root / "bin/busybox", os.X_OK)
    assert os.readlink(root / "usr/bin/wget") == "/bin/busybox"
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert "nobody:x:65534" in (root / "etc/passwd").read_text()

    merged = overlay([root])
    script = "ls /bin/sh; id -u; hostname >/dev/null && head -c 3 /etc/passwd && echo && wc -l </etc/group"
    out = subprocess.run(
        ["chroot", str(merged), "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert out == ["/bin/sh", "0", "roo", "2"]
    for applet in ("sleep", "ps", "top", "dd", "wget", "cat", "ls"):
        assert (merged / "bin" / applet).exists() or (merged / "usr/bin" / applet).exists(), applet


def test_starter_refuses_a_dynamic_busybox(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="dynamically linked"):
        busybox_rootfs_tar(tmp_path / "x.tar", busybox=Path("/bin/ls"))
    with pytest.raises(RuntimeFailure, match="not an ELF"):
        busybox_rootfs_tar(tmp_path / "x.tar", busybox=Path("/etc/passwd"))
