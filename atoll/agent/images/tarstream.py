"""A streaming tar reader written for hostile input.

Why not :mod:`tarfile`? Its extraction filters are not to be trusted, and on CPython 3.11.7 even its
parser has denial-of-service bugs on crafted headers (backtracking regexes on PAX records,
CVE-2024-6232; loops on negative offsets, CVE-2025-8194). An agent thread stuck in such a loop can't be
cancelled. This reader parses only what image layers use: ustar and V7 headers, GNU long names and
links and base-256 numbers, and PAX records (path, linkpath, size, uid, gid, mtime, ``SCHILY.xattr.*``).
Every length it honours is bounded, every step consumes input, and names stay ``bytes`` as the archive
has them. Anything it doesn't understand (sparse files, multi-volume members) is refused, not guessed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from atoll.agent.images.streams import CHUNK, Reader
from atoll.model.errors import BadImage

BLOCK = 512
_XATTR = b"SCHILY.xattr."
_ZERO_BLOCK = bytes(BLOCK)
META_LIMIT = 1 << 20
"""Largest GNU long name/link or PAX header we accept; real ones are a few KiB (xattrs up to 64 KiB)."""


class Kind(enum.Enum):
    FILE = "file"
    HARDLINK = "hardlink"
    SYMLINK = "symlink"
    CHAR = "char device"
    BLOCK = "block device"
    DIR = "directory"
    FIFO = "fifo"


_KINDS = {
    b"0": Kind.FILE,
    b"\0": Kind.FILE,
    b"7": Kind.FILE,
    b"1": Kind.HARDLINK,
    b"2": Kind.SYMLINK,
    b"3": Kind.CHAR,
    b"4": Kind.BLOCK,
    b"5": Kind.DIR,
    b"6": Kind.FIFO,
}


@dataclass(frozen=True, slots=True)
class TarEntry:
    name: bytes
    kind: Kind
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: bytes = b""
    xattrs: Mapping[bytes, bytes] = field(default_factory=dict)
    offset: int = 0
    """Where the entry's data starts in the stream (used to index an archive we can seek in)."""

    @property
    def display(self) -> str:
        return self.name.decode("utf-8", "backslashreplace")


class TarReader:
    """Iterate entries; read the current entry's data with :meth:`read` (unread data is skipped).

    ``length``: the stream is a seekable file of that many bytes, so data is skipped by seeking (to index
    an archive without reading its blobs). ``require_end``: EOF without the end-of-archive block is an
    error; callers that verify a digest of the whole stream can leave it off, as Docker does.
    """

    def __init__(self, stream: Reader, *, label: str, length: int | None = None, require_end: bool = False):
        self._stream = stream
        self._label = label
        self._length = length
        self._require_end = require_end
        self._pos = 0
        self._remaining = 0
        self._padding = 0
        self._current = b""

    def read(self, size: int = CHUNK, /) -> bytes:
        n = self._remaining if size < 0 else min(size, self._remaining)
        if n == 0:
            return b""
        data = self._read_exact(n, self._current)
        self._remaining -= n
        return data

    def __iter__(self) -> Iterator[TarEntry]:
        pax: dict[bytes, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            self._skip(self._remaining + self._padding)
            self._remaining = self._padding = 0
            block = self._read_header_block()
            if block is None or block == _ZERO_BLOCK:
                if pax or long_name is not None or long_link is not None:
                    raise BadImage(f"{self._label}: archive ends after an extended header")
                return
            header = _parse_header(block, self._label, self._pos - BLOCK)
            typeflag = block[156:157]
            if typeflag in (b"x", b"g", b"L", b"K"):
                if header.size > META_LIMIT:
                    raise BadImage(f"{self._label}: extended header of {header.size} bytes is too large")
                self._current = header.name
                data = self._read_exact(header.size, header.name)
                self._padding = -header.size % BLOCK
                if typeflag == b"x":
                    pax.update(_parse_pax(data, self._label))
                elif typeflag == b"L":
                    long_name = data.split(b"\0", 1)[0]
                elif typeflag == b"K":
                    long_link = data.split(b"\0", 1)[0]
                continue  # "g" (global) headers carry nothing we apply
            entry = self._entry(block, header, typeflag, pax, long_name, long_link)
            pax, long_name, long_link = {}, None, None
            has_data = entry.kind is Kind.FILE or typeflag == b"V"
            self._remaining = entry.size if has_data else 0
            self._padding = -self._remaining % BLOCK
            self._current = entry.name
            if self._length is not None and entry.offset + self._remaining > self._length:
                raise BadImage(f"{self._label}: truncated: {entry.display} runs past the end of the archive")
            if typeflag == b"V":
                continue  # a volume label, not a file
            yield entry

    def _entry(
        self,
        block: bytes,
        header: _Header,
        typeflag: bytes,
        pax: dict[bytes, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> TarEntry:
        name = pax.get(b"path", long_name if long_name is not None else header.name)
        linkname = pax.get(b"linkpath", long_link if long_link is not None else header.linkname)
        shown = name.decode("utf-8", "backslashreplace")
        if typeflag == b"S" or (pax and any(k.startswith(b"GNU.sparse.") for k in pax)):
            raise BadImage(f"{self._label}: {shown}: sparse files are not supported")
        kind = _KINDS.get(typeflag)
        if kind is None and typeflag != b"V":
            raise BadImage(f"{self._label}: {shown}: unsupported tar entry type {typeflag!r}")
        if kind is Kind.FILE and name.endswith(b"/"):
            kind = Kind.DIR  # V7 archives mark directories with a trailing slash only
        xattrs = {k[len(_XATTR) :]: v for k, v in pax.items() if k.startswith(_XATTR)} if pax else {}
        return TarEntry(
            name=name,
            kind=kind or Kind.FILE,
            size=_pax_int(pax, b"size", header.size, self._label),
            mode=header.mode,
            uid=_pax_int(pax, b"uid", header.uid, self._label),
            gid=_pax_int(pax, b"gid", header.gid, self._label),
            mtime_ns=_pax_time(pax[b"mtime"], self._label) if b"mtime" in pax else header.mtime * 10**9,
            linkname=linkname,
            xattrs=xattrs,
            offset=self._pos,
        )

    def _read_header_block(self) -> bytes | None:
        data = self._stream.read(BLOCK)
        if not data:
            if self._require_end:
                raise BadImage(f"{self._label}: truncated: no end-of-archive marker")
            return None
        self._pos += len(data)
        if len(data) < BLOCK:
            data += self._read_exact(BLOCK - len(data), b"")
        return data

    def _read_exact(self, n: int, name: bytes) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            parts = [data]
            got = len(data)
            while got < n:
                more = self._stream.read(n - got)
                if not more:
                    what = name.decode("utf-8", "backslashreplace") or "a header"
                    raise BadImage(f"{self._label}: truncated tar: the archive ends inside {what}")
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        self._pos += n
        return data

    def _skip(self, n: int) -> None:
        if n <= 0:
            return
        if self._length is not None:
            seek = getattr(self._stream, "seek")  # noqa: B009 - only seekable streams come with a length
            seek(n, 1)
            self._pos += n
            return
        while n:
            step = min(n, CHUNK)
            self._read_exact(step, self._current)
            n -= step


@dataclass(frozen=True, slots=True)
class _Header:
    name: bytes
    linkname: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int


def _parse_header(block: bytes, label: str, offset: int) -> _Header:
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    try:
        stored = _number(block[148:156], label, "checksum")
    except BadImage:
        stored = -1
    if stored != unsigned and stored != _signed_checksum(block):
        raise BadImage(f"{label}: corrupt tar: invalid header (bad checksum) at offset {offset}")
    name = _cstr(block[0:100])
    if block[257:263] == b"ustar\0":  # POSIX ustar: the prefix extends the name; GNU uses it otherwise
        prefix = _cstr(block[345:500])
        if prefix:
            name = prefix + b"/" + name
    size = _number(block[124:136], label, "size")
    if size < 0:
        raise BadImage(f"{label}: corrupt tar: negative size at offset {offset}")
    return _Header(
        name=name,
        linkname=_cstr(block[157:257]),
        mode=_number(block[100:108], label, "mode") & 0o7777,
        uid=_number(block[108:116], label, "uid"),
        gid=_number(block[116:124], label, "gid"),
        size=size,
        mtime=_number(block[136:148], label, "mtime"),
    )


def _signed_checksum(block: bytes) -> int:
    """Some old tars summed signed chars; only computed when the usual sum doesn't match."""
    return sum((b - 256 if b > 127 else b) for b in block[:148] + block[156:]) + 8 * 0x20


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _number(field: bytes, label: str, what: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    text = _cstr(field).strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise BadImage(f"{label}: corrupt tar: bad {what} field {text[:16]!r}") from None


def _parse_pax(data: bytes, label: str) -> dict[bytes, bytes]:
    """Parse ``"<len> <key>=<value>\\n"`` records in one linear pass (no regex)."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos, pos + 24)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise BadImage(f"{label}: corrupt tar: malformed PAX record at byte {pos}")
        end = pos + int(digits)
        if end <= space + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise BadImage(f"{label}: corrupt tar: malformed PAX record at byte {pos}")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise BadImage(f"{label}: corrupt tar: PAX record without '=' at byte {pos}")
        records[key] = value
        pos = end
    return records


def _pax_int(pax: Mapping[bytes, bytes], key: bytes, default: int, label: str) -> int:
    value = pax.get(key)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 20:
        raise BadImage(f"{label}: corrupt tar: PAX {key.decode()} is {value[:24]!r}")
    return int(value)


def _pax_time(value: bytes, label: str) -> int:
    negative = value.startswith(b"-")
    whole, _, frac = value.removeprefix(b"-").partition(b".")
    if not whole.isdigit() or len(whole) > 19 or (frac and not frac.isdigit()):
        raise BadImage(f"{label}: corrupt tar: PAX mtime is {value[:32]!r}")
    ns = int(whole) * 10**9 + int((frac + b"000000000")[:9])
    return -ns if negative else ns
