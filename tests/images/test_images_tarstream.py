"""The tar reader and the extractor on their own: formats, limits, and fuzzed input."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atoll.agent.images.extract import unpack
from atoll.agent.images.tarstream import BLOCK, META_LIMIT, Kind, TarReader
from atoll.model.errors import BadImage, RuntimeFailure
from tests.images.factory import directory, file, hardlink, layer, symlink


def entries(data: bytes, **kwargs: bool) -> list[tuple[str, Kind, int, int, int, int, str, bytes]]:
    reader = TarReader(io.BytesIO(data), label="t", **kwargs)  # type: ignore[arg-type]
    out = []
    for e in reader:
        body = b"".join(iter(lambda: reader.read(7), b""))
        out.append((e.display, e.kind, e.mode, e.uid, e.gid, e.mtime_ns, e.linkname.decode(), body))
    return out


def make(fmt: int, *infos: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in infos:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    for k, v in attrs.items():
        setattr(ti, k, v)
    return ti


LONG = "d" * 60 + "/" + "e" * 70 + "/" + "f" * 90


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_and_big_numbers(fmt: int) -> None:
    data = make(
        fmt,
        (info(LONG, mode=0o4755, uid=3_000_000, gid=7, mtime=1_700_000_000), b"payload"),
        (info("l", tarfile.SYMTYPE, linkname=LONG + "/target"), b""),
        (info("dir", tarfile.DIRTYPE, mode=0o1777), b""),
    )
    got = entries(data, require_end=True)
    assert got[0] == (LONG, Kind.FILE, 0o4755, 3_000_000, 7, 1_700_000_000 * 10**9, "", b"payload")
    assert got[1][6] == LONG + "/target" and got[1][1] is Kind.SYMLINK
    assert got[2][1] is Kind.DIR and got[2][2] == 0o1777


def test_ustar_prefix_and_pax_details() -> None:
    name = "p" * 90 + "/" + "n" * 90
    assert entries(make(tarfile.USTAR_FORMAT, (info(name), b"x")))[0][0] == name
    pax = info("frac")
    pax.pax_headers = {"mtime": "1700000000.123456789", "SCHILY.xattr.user.a": "b"}
    data = make(tarfile.PAX_FORMAT, (pax, b""))
    (entry,) = list(TarReader(io.BytesIO(data), label="t"))
    assert entry.mtime_ns == 1_700_000_000_123_456_789
    assert dict(entry.xattrs) == {b"user.a": b"b"}


def test_negative_gnu_mtime() -> None:
    data = make(tarfile.GNU_FORMAT, (info("old", mtime=-1000), b""))
    (entry,) = list(TarReader(io.BytesIO(data), label="t"))
    assert entry.mtime_ns == -1000 * 10**9


def _patch(block: bytes, offset: int, value: bytes) -> bytes:
    block = block[:offset] + value + block[offset + len(value) :]
    block = block[:148] + b" " * 8 + block[156:]
    checksum = sum(block)
    return block[:148] + f"{checksum:06o}\0 ".encode() + block[156:]


def test_rejections() -> None:
    good = make(tarfile.USTAR_FORMAT, (info("a"), b"data"))
    with pytest.raises(BadImage, match="bad checksum"):
        entries(good[:100] + b"X" + good[101:])
    with pytest.raises(BadImage, match="truncated tar"):
        entries(good[:300])
    with pytest.raises(BadImage, match="truncated tar"):
        entries(good[: BLOCK + 2])
    with pytest.raises(BadImage, match="no end-of-archive"):
        entries(good[: 2 * BLOCK], require_end=True)
    assert entries(good[: 2 * BLOCK])[0][0] == "a", "without require_end, a missing end block is tolerated"
    with pytest.raises(BadImage, match="sparse"):
        entries(_patch(good[:BLOCK], 156, b"S") + good[BLOCK:])
    with pytest.raises(BadImage, match="unsupported tar entry type"):
        entries(_patch(good[:BLOCK], 156, b"M") + good[BLOCK:])
    with pytest.raises(BadImage, match="bad size"):
        entries(_patch(good[:BLOCK], 124, b"9999") + good[BLOCK:])
    pax = info("p")
    pax.pax_headers = {"comment": "x"}
    data = bytearray(make(tarfile.PAX_FORMAT, (pax, b"")))
    data[BLOCK : BLOCK + 2] = b"99"  # the record's length now runs past the header's data
    with pytest.raises(BadImage, match="malformed PAX record"):
        entries(bytes(data))
    huge = _patch(good[:BLOCK], 156, b"x")
    huge = _patch(huge, 124, f"{META_LIMIT + 1:011o}".encode())
    with pytest.raises(BadImage, match="too large"):
        entries(huge + bytes(BLOCK * 4))


def test_v7_directories_have_a_trailing_slash() -> None:
    data = make(tarfile.USTAR_FORMAT, (info("olddir/", mode=0o755), b""))
    assert entries(data)[0][1] is Kind.DIR


def test_reader_agrees_with_tarfile_on_a_real_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a/b").mkdir(parents=True)
    (src / "a/b/file").write_bytes(os.urandom(100_000))
    (src / "a/link").symlink_to("b/file")
    os.link(src / "a/b/file", src / "a/hard")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(src, arcname=".")
    ours = [(e[0].rstrip("/") or ".", e[1].value, e[6]) for e in entries(buf.getvalue(), require_end=True)]
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        kinds = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "directory", tarfile.SYMTYPE: "symlink"}
        theirs = [(m.name, kinds.get(m.type, "hardlink"), m.linkname) for m in tar.getmembers()]
    assert ours == theirs


def test_extract_replaces_earlier_entries(tmp_path: Path) -> None:
    data = layer(
        file("x", b"first"),
        hardlink("y", "x"),
        file("x", b"second"),  # unlinked and rewritten: the hard link keeps the old content
        directory("d"),
        file("d/inner", b"i"),
        file("d", b"now a file"),
        symlink("s", "x"),
        directory("s"),
    )
    dest = tmp_path / "layer"
    dest.mkdir()
    unpack(io.BytesIO(data), str(dest), label="t")
    assert (dest / "x").read_bytes() == b"second" and (dest / "y").read_bytes() == b"first"
    assert (dest / "d").read_bytes() == b"now a file"
    assert (dest / "s").is_dir() and not (dest / "s").is_symlink()


SEED = layer(
    directory("etc"),
    file("etc/passwd", b"root:x:0:0\n" * 20),
    symlink("etc/link", "/etc/passwd"),
    hardlink("etc/hard", "etc/passwd"),
    file("a/b/c", b"deep"),
    file("etc/.wh.gone"),
    file("var/.wh..wh..opq"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzzed_layers_fail_cleanly(tmp_path: Path, edits: list[tuple[int, int]]) -> None:
    """Corrupted layers either extract or raise BadImage; nothing lands outside the destination."""
    data = bytearray(SEED)
    for pos, value in edits:
        data[pos] = value
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    dest = base / "layer"
    dest.mkdir()
    try:
        unpack(io.BytesIO(bytes(data)), str(dest), label="fuzz")
    except (BadImage, RuntimeFailure):
        pass
    finally:
        assert os.listdir(base) == ["layer"]
        shutil.rmtree(base)
