"""The host side of docker cp / export / diff on a plain directory standing in for a root filesystem:
stats in Docker's shape, tars that never leave the root, extraction that refuses symlinked parents,
and the writable layer's changes against image layers (whiteouts, opaque directories)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from atoll.agent.rootfiles import (
    extract_archive,
    go_mode,
    in_layers,
    path_stat,
    tree_size,
    upper_changes,
    without_mountpoints,
    write_archive,
)
from atoll.model.errors import BadImage, InvalidInput, NotFound
from atoll.model.rootfiles import ChangeKind, FileChange


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "conf").write_text("conf\n")
    (r / "data" / "sub").mkdir(parents=True)
    (r / "data" / "sub" / "x").write_text("x")
    os.link(r / "data" / "sub" / "x", r / "data" / "hard")
    (r / "tmp").mkdir(mode=0o1777)
    os.chmod(r / "tmp", 0o1777)
    return r


def tar_names(root: Path, path: str, *, contents: bool = False) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    write_archive(root, path, buf, contents=contents)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_go_modes() -> None:
    assert go_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert go_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert go_mode(stat.S_IFDIR | stat.S_ISVTX | 0o777) == (1 << 31) | (1 << 20) | 0o777


def test_stat_and_symlinks_resolved_inside(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    os.symlink(f"/../../../../../..{outside}", root / "esc")
    st = path_stat(root, "/etc/conf")
    assert (st.name, st.size, st.mode) == ("conf", 5, 0o644)
    assert st.mtime.endswith("Z") and "T" in st.mtime
    link = path_stat(root, "/esc")
    assert link.mode & (1 << 27) and link.link_target == str(outside)
    with pytest.raises(NotFound):
        path_stat(root, "/esc/secret")  # the host's file is not reachable through the link
    with pytest.raises(InvalidInput):
        path_stat(root, "relative")
    assert path_stat(root, "/").name == "/"


def test_archive_directory_and_links(root: Path, tmp_path: Path) -> None:
    os.symlink("/etc", root / "data" / "link")
    got = tar_names(root, "/data")
    assert set(got) == {"data", "data/sub", "data/sub/x", "data/hard", "data/link"}
    assert got["data/link"].issym() and got["data/link"].linkname == "/etc"
    # One of the two names of the hard-linked file is a link to the other.
    kinds = sorted((got["data/hard"].islnk(), got["data/sub/x"].islnk()))
    assert kinds == [False, True]
    assert set(tar_names(root, "/etc/conf")) == {"conf"}
    everything = tar_names(root, "/", contents=True)
    assert {"etc/conf", "data/sub/x", "tmp"} <= set(everything)
    with pytest.raises(NotFound):
        tar_names(root, "/nope")


def _tar(*members: tuple[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_extract_keeps_mode_and_refuses_escapes(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    extract_archive(root, "/tmp", _tar(("new/file", b"hi")))
    assert (root / "tmp" / "new" / "file").read_bytes() == b"hi"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777  # the destination keeps its mode
    os.symlink(str(outside), root / "tmp" / "esc")
    with pytest.raises(BadImage):
        extract_archive(root, "/tmp", _tar(("esc/pwn", b"pwned")))
    with pytest.raises(BadImage):
        extract_archive(root, "/tmp", _tar(("../../pwn", b"pwned")))
    # A destination through the link resolves inside the root: there is nothing there.
    with pytest.raises(NotFound):
        extract_archive(root, "/tmp/esc", _tar(("pwn", b"pwned")))
    with pytest.raises(InvalidInput):
        extract_archive(root, "/etc/conf", _tar(("pwn", b"pwned")))
    assert list(outside.iterdir()) == []


def test_changes_against_layers(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "a").write_text("a")
    (lower / "opq").mkdir()
    (lower / "opq" / "old").write_text("old")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "a").write_text("changed")
    (upper / "etc" / "new").write_text("new")
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "dev").mkdir()
    (upper / "dev" / "null").write_text("")
    found = upper_changes(upper, lambda p: in_layers([lower], p))
    assert [(c.path, c.kind) for c in found] == [
        ("/dev", ChangeKind.ADDED),
        ("/dev/null", ChangeKind.ADDED),
        ("/etc", ChangeKind.MODIFIED),
        ("/etc/a", ChangeKind.MODIFIED),
        ("/etc/gone", ChangeKind.DELETED),
        ("/etc/new", ChangeKind.ADDED),
    ]
    # Mount points the runtime made are not the instance's changes (nor their parents, for them alone).
    only = [FileChange("/etc", ChangeKind.MODIFIED), FileChange("/etc/resolv.conf", ChangeKind.ADDED)]
    assert without_mountpoints(only, {"/etc/resolv.conf"}) == []
    assert without_mountpoints(found, {"/dev"}) == [c for c in found if not c.path.startswith("/dev")]
    # A whiteout or an opaque directory in a layer hides what is below it.
    top = tmp_path / "top"
    (top / "opq").mkdir(parents=True)
    os.setxattr(top / "opq", "trusted.overlay.opaque", b"y")
    os.mknod(top / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (lower / "gone").write_text("was here")
    assert not in_layers([top, lower], "/opq/old") and in_layers([top, lower], "/opq")
    assert not in_layers([top, lower], "/gone") and in_layers([top, lower], "/etc/a")
    assert tree_size(upper) == len("changed") + len("new")
