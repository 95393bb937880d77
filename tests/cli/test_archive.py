"""Tarring a directory on the fly for ``image build`` and ``image import``."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.client import archive, estimate_tar_size, tar_directory
from atoll.client.uploads import CHUNK_SIZE


def make_tree(root: Path) -> None:
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "bin" / "tool", 0o4755)
    (root / "etc").mkdir(mode=0o750)
    (root / "etc" / "conf").write_text("x=1\n")
    os.chown(root / "etc" / "conf", 1234, 5678)
    os.link(root / "bin" / "tool", root / "bin" / "tool-link")
    os.symlink("../etc/conf", root / "bin" / "conf")
    os.symlink("/absolute/elsewhere", root / "dangling")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o666 | 0o020000, os.makedev(1, 3))


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


@pytest.mark.skipif(os.geteuid() != 0, reason="chown and mknod need root")
def test_tree_keeps_modes_owners_and_links(tmp_path: Path) -> None:
    make_tree(tmp_path)
    skipped: list[tuple[str, str]] = []
    data = b"".join(tar_directory(tmp_path, on_skip=lambda name, why: skipped.append((name, why))))
    entries = members(data)
    assert list(entries) == [
        "bin",
        "dangling",
        "etc",
        "fifo",
        "bin/conf",
        "bin/tool",
        "bin/tool-link",
        "etc/conf",
    ]
    assert skipped == [("null", "device node")]
    assert entries["bin/tool"].mode == 0o4755
    assert entries["etc"].isdir() and entries["etc"].mode == 0o750
    assert (entries["etc/conf"].uid, entries["etc/conf"].gid) == (1234, 5678)
    assert entries["etc/conf"].uname == entries["etc/conf"].gname == ""
    assert entries["bin/conf"].issym() and entries["bin/conf"].linkname == "../etc/conf"
    assert entries["dangling"].linkname == "/absolute/elsewhere"
    assert entries["bin/tool-link"].islnk() and entries["bin/tool-link"].linkname == "bin/tool"
    assert entries["fifo"].isfifo()
    assert not any(name.startswith(("/", "./")) for name in entries)


def test_big_file_goes_out_in_chunks(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(os.urandom(3 * CHUNK_SIZE + 17))
    chunks = list(tar_directory(tmp_path))
    assert len(chunks) >= 3
    assert max(len(c) for c in chunks) < 2 * CHUNK_SIZE
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile("big")
        assert f is not None
        assert f.read() == (tmp_path / "big").read_bytes()
    assert estimate_tar_size(tmp_path) == len(data)


def test_stopping_early_stops_the_worker(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"f{i}").write_bytes(os.urandom(CHUNK_SIZE))
    stream = tar_directory(tmp_path)
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name.startswith("atoll-tar:")]


def test_errors_in_the_worker_reach_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def vanishing(root: Path) -> Iterator[tuple[Path, str]]:
        yield root / "gone", "gone"

    monkeypatch.setattr(archive, "walk", vanishing)
    with pytest.raises(FileNotFoundError):
        list(tar_directory(tmp_path))


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        tar_directory(tmp_path / "missing")
