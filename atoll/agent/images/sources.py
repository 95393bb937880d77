"""Where an import reads its blobs from: a spooled archive (indexed once, read by seeking) or a directory.

Both answer the same two questions by archive-relative name ("blobs/sha256/<hex>", "manifest.json"):
does it exist, and give me its bytes. Names from untrusted JSON never reach the host's file system
unchecked: in an archive they are only dictionary keys; in a directory they are refused if they hold
``..`` or resolve (through symlinks) outside it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from atoll.agent.images.tarstream import Kind, TarEntry, TarReader
from atoll.model.errors import BadImage

_MAX_LINK_HOPS = 16


class Blob:
    """An open member: ``size`` bytes read with ``read(n)``; a short read means a truncated archive."""

    def __init__(self, file: BinaryIO, offset: int, size: int, where: str) -> None:
        self._file = file
        self._remaining = size
        self.size = size
        self.where = where
        file.seek(offset)

    def read(self, size: int = -1, /) -> bytes:
        n = self._remaining if size < 0 else min(size, self._remaining)
        if n == 0:
            return b""
        data = self._file.read(n)
        if not data:
            raise BadImage(f"{self.where}: truncated: the archive ends inside it")
        self._remaining -= len(data)
        return data


class BlobSource(Protocol):
    label: str

    def exists(self, name: str) -> bool: ...

    def open(self, name: str) -> AbstractContextManager[Blob]: ...


def normalize(name: str) -> str | None:
    """An archive-relative name in canonical form, or None if it climbs out of the archive."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


class TarArchive:
    """A tar archive on local disk, indexed by member name. Links are followed only inside it."""

    def __init__(self, path: Path, label: str) -> None:
        self.label = label
        self._path = path
        self._members: dict[str, TarEntry] = {}
        length = path.stat().st_size
        with open(path, "rb") as f:
            for entry in TarReader(f, label=label, length=length):
                name = normalize(entry.name.decode("utf-8", "surrogateescape"))
                if name:
                    self._members[name] = entry  # a later member of the same name wins, as in tar

    def _resolve(self, name: str) -> TarEntry | None:
        current = normalize(name)
        for _ in range(_MAX_LINK_HOPS):
            if current is None:
                return None
            entry = self._members.get(current)
            if entry is None or entry.kind is Kind.FILE:
                return entry
            link = entry.linkname.decode("utf-8", "surrogateescape")
            if entry.kind is Kind.SYMLINK and not link.startswith("/"):
                current = normalize(posixpath.join(posixpath.dirname(current), link))
            elif entry.kind in (Kind.SYMLINK, Kind.HARDLINK):
                current = normalize(link)
            else:
                return None
        return None

    def exists(self, name: str) -> bool:
        return self._resolve(name) is not None

    @contextmanager
    def open(self, name: str) -> Iterator[Blob]:
        entry = self._resolve(name)
        if entry is None:
            raise BadImage(f"{self.label}: missing member {name}")
        with open(self._path, "rb") as f:
            yield Blob(f, entry.offset, entry.size, f"{self.label}: {name}")


class DirectorySource:
    """An unpacked OCI layout or docker-save directory on local disk."""

    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise BadImage(f"{path}: not a directory")
        self.label = str(path)
        self._root = os.path.realpath(path)

    def _resolve(self, name: str) -> str | None:
        norm = normalize(name)
        if not norm:
            return None
        real = os.path.realpath(os.path.join(self._root, norm))
        if not real.startswith(self._root + os.sep) or not os.path.isfile(real):
            return None
        return real

    def exists(self, name: str) -> bool:
        return self._resolve(name) is not None

    @contextmanager
    def open(self, name: str) -> Iterator[Blob]:
        real = self._resolve(name)
        if real is None:
            raise BadImage(f"{self.label}: missing file {name}")
        with open(real, "rb") as f:
            yield Blob(f, 0, os.fstat(f.fileno()).st_size, f"{self.label}/{name}")
