"""Streaming request bodies: a file or an iterator of chunks goes out as it is read, never whole in memory."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

CHUNK_SIZE = 1 << 20

Progress = Callable[[int], None]
"""Called after each chunk is handed to the connection, with the number of bytes sent so far."""


@runtime_checkable
class SupportsRead(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


UploadSource = SupportsRead | Iterable[bytes]


def body_size(source: UploadSource) -> int | None:
    """The number of bytes left in a regular file, so the request can carry a Content-Length."""
    fileno = getattr(source, "fileno", None)
    tell = getattr(source, "tell", None)
    if fileno is None or tell is None:
        return None
    try:
        st = os.fstat(fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(st.st_size - int(tell()), 0)
    except (OSError, ValueError):
        return None


def iter_body(source: UploadSource, progress: Progress | None = None) -> Iterator[bytes]:
    chunks: Iterable[bytes]
    if isinstance(source, SupportsRead):
        reader = source
        chunks = iter(lambda: reader.read(CHUNK_SIZE), b"")
    else:
        chunks = source
    sent = 0
    for chunk in chunks:
        if not chunk:
            continue
        yield bytes(chunk)
        sent += len(chunk)
        if progress is not None:
            progress(sent)
