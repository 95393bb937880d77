"""The writable layer's trip between hosts (``atoll.agent.migration``) on real files: a full copy, then a
delta that carries only what changed and drops what was deleted; owners, modes, symlinks and overlay
whiteouts survive, and so do extended attributes (file capabilities, user attributes, overlay's opaque
directories, checked through a real overlay mount); a tar that tries to climb out or write through a
symlink is refused."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from atoll.agent import migration
from atoll.agent.images import mount_overlay, unmount
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


def _mounted(lower: Path, upper: Path, work: Path, merged: Path) -> contextlib.AbstractContextManager[Path]:
    @contextlib.contextmanager
    def mount() -> Iterator[Path]:
        for d in (upper, work, merged):
            d.mkdir(parents=True, exist_ok=True)
        mount_overlay([lower], upper, work, merged)
        try:
            yield merged
        finally:
            unmount(merged)

    return mount()


async def test_extended_attributes_and_opaque_directories_survive_the_move(tmp_path: Path) -> None:
    """A real overlay writes the upper layer (an opaque directory, a whiteout), a binary gets a file
    capability and a file a user attribute; after export, receive and install on "another host" the
    same overlay shows the same tree: the image's directory stays hidden, the capability and the
    attribute are there, byte for byte."""
    lower, tmp = tmp_path / "lower", tmp_path / "tmp"
    for d in (lower / "etc" / "app.d", tmp):
        d.mkdir(parents=True)
    (lower / "etc" / "app.d" / "from-image.conf").write_text("image")
    (lower / "etc" / "motd").write_text("image")
    (lower / "bin").mkdir()
    shutil.copy("/bin/true", lower / "bin" / "ping")

    source = tmp_path / "source"
    with _mounted(lower, source / "upper", source / "work", source / "merged") as merged:
        shutil.rmtree(merged / "etc" / "app.d")  # then made again: overlay marks it opaque
        (merged / "etc" / "app.d").mkdir()
        (merged / "etc" / "app.d" / "mine.conf").write_text("mine")
        (merged / "etc" / "motd").unlink()  # a whiteout
        (merged / "bin" / "ping").chmod(0o755)  # copied up
        out = subprocess.run(["setcap", "cap_net_raw+ep", str(merged / "bin" / "ping")], capture_output=True)
        assert out.returncode == 0, out.stderr
        os.setxattr(merged / "etc" / "app.d" / "mine.conf", "user.atoll.note", b"\x00\xffbinary")
    upper = source / "upper"
    assert os.getxattr(upper / "etc" / "app.d", "trusted.overlay.opaque") == b"y"
    capability = os.getxattr(upper / "bin" / "ping", "security.capability")

    stage = tmp_path / "stage"
    await _copy(upper, stage, tmp, 0.0)
    # The delta after a change of attributes only: the ctime moved, so the file travels again.
    cut = time.time()
    time.sleep(0.05)
    os.setxattr(upper / "etc" / "app.d" / "mine.conf", "user.atoll.note", b"second")
    os.setxattr(upper / "etc" / "app.d", "user.atoll.dir", b"d")
    await _copy(upper, stage, tmp, cut)
    os.removexattr(upper / "etc" / "app.d", "user.atoll.dir")
    await _copy(upper, stage, tmp, time.time())

    target = tmp_path / "target"
    target.mkdir()
    migration.install(stage, target / "upper")
    moved = target / "upper"
    assert os.getxattr(moved / "etc" / "app.d", "trusted.overlay.opaque") == b"y"
    assert "user.atoll.dir" not in os.listxattr(moved / "etc" / "app.d"), "removed after the first copy"
    assert os.getxattr(moved / "bin" / "ping", "security.capability") == capability
    assert "trusted.overlay.origin" not in os.listxattr(moved / "bin" / "ping"), "a handle of the source's fs"
    with _mounted(lower, moved, target / "work", target / "merged") as merged:
        assert os.listdir(merged / "etc" / "app.d") == ["mine.conf"], "the image's files stay hidden"
        assert not (merged / "etc" / "motd").exists()
        assert os.getxattr(merged / "etc" / "app.d" / "mine.conf", "user.atoll.note") == b"second"
        caps = subprocess.run(["getcap", str(merged / "bin" / "ping")], capture_output=True, text=True)
        assert "cap_net_raw" in caps.stdout, caps.stdout + caps.stderr


async def test_entries_deleted_while_the_copy_runs_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-copy runs while the instance does: a file listed by the walk may be gone when its turn
    comes. It is left out (and out of the manifest) instead of failing the whole move."""
    upper, stage, tmp = tmp_path / "upper", tmp_path / "stage", tmp_path / "tmp"
    for d in (upper, tmp):
        d.mkdir()
    (upper / "kept").write_text("k")
    walk = migration._entries
    monkeypatch.setattr(migration, "_entries", lambda root: sorted([*walk(root), "gone", "gone-dir"]))
    await _copy(upper, stage, tmp, 0.0)
    assert sorted(os.listdir(stage)) == ["kept"]
