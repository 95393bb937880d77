"""The writable layer's trip between hosts (``atoll.agent.migration``) on real files: a full copy, then a
delta that carries only what changed and drops what was deleted; owners, modes, symlinks and overlay
whiteouts survive; a tar that tries to climb out or write through a symlink is refused."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from atoll.agent import migration
from atoll.model.errors import InvalidInput

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _copy(upper: Path, stage: Path, tmp: Path, since: float) -> int:
    size = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal size
        async for chunk in migration.export(upper, tmp, since):
            size += len(chunk)
            yield chunk

    await migration.receive(stage, tmp, counted())
    return size


async def test_full_copy_then_delta(tmp_path: Path) -> None:
    upper, stage, tmp = tmp_path / "upper", tmp_path / "stage", tmp_path / "tmp"
    for d in (upper / "etc", upper / "var" / "old", tmp):
        d.mkdir(parents=True)
    (upper / "etc" / "conf").write_text("v1")
    (upper / "etc" / "conf").chmod(0o640)
    os.chown(upper / "etc" / "conf", 1234, 5678)
    (upper / "var" / "old" / "gone").write_text("x")
    (upper / "big").write_bytes(os.urandom(1 << 20))
    (upper / "link").symlink_to("/etc/passwd")
    os.mknod(upper / "whiteout", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlay's deletion mark

    full = await _copy(upper, stage, tmp, 0.0)
    assert full > 1 << 20
    assert (stage / "etc" / "conf").read_text() == "v1"
    st = (stage / "etc" / "conf").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o640)
    assert os.readlink(stage / "link") == "/etc/passwd"
    assert stat.S_ISCHR((stage / "whiteout").lstat().st_mode)

    cut = time.time()
    time.sleep(0.05)
    (upper / "etc" / "conf").write_text("v2")
    (upper / "new").write_text("n")
    (upper / "var" / "old" / "gone").unlink()
    (upper / "var" / "old").rmdir()
    delta = await _copy(upper, stage, tmp, cut)
    assert delta < full // 10, "the delta leaves the unchanged megabyte out"
    assert (stage / "etc" / "conf").read_text() == "v2"
    assert (stage / "new").read_text() == "n"
    assert not (stage / "var" / "old").exists(), "deleted since the first copy: dropped by the manifest"
    assert (stage / "big").read_bytes() == (upper / "big").read_bytes()

    target = tmp_path / "instance" / "upper"
    target.mkdir(parents=True)
    migration.install(stage, target)
    assert (target / "new").read_text() == "n" and not stage.exists()
    assert os.listdir(tmp) == []


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("../escape")], "outside"),
        ([_file("/abs")], "outside"),
        ([_symlink("out", str(Path("/tmp"))), _file("out/planted")], "through a symlink"),
    ],
)
async def test_hostile_archives_are_refused(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], message: str
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    data = _tar(*members)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    with pytest.raises(InvalidInput, match=message):
        await migration.receive(tmp_path / "stage", tmp, chunks())
    assert not Path("/tmp/planted").exists()
