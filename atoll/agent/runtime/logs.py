"""Reading the log file that ``atoll-init`` appends to, in the CRI (Kubernetes) log format.

One record per line: ``<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>``. ``F`` ends a line (its
newline was removed); ``P`` is a piece of a line that continues in the next record of that stream.
Content never contains a newline, so the file splits on ``\\n`` exactly, and it can be read backwards
for ``tail`` without scanning a large file from the start.

The format is chosen because it is the de-facto standard for container logs on disk (containerd and
CRI-O write it, log shippers read it), it is append-only and self-delimiting, and a single
``write()`` per record keeps records whole without any locking.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path

from atoll.model.errors import InvalidInput
from atoll.model.instance import LogEntry

_BLOCK = 1 << 16
_STREAMS = (b"stdout", b"stderr")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_line(line: bytes) -> LogEntry | None:
    """One record (with or without its trailing newline); None if it is not a valid record."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in _STREAMS or parts[2] not in (b"F", b"P"):
        return None
    content = parts[3] if len(parts) == 4 else b""
    try:
        time = parts[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    partial = parts[2] == b"P"
    return LogEntry(
        time=time, stream=parts[1].decode(), data=content if partial else content + b"\n", partial=partial
    )


def parse_time(value: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any fraction length) or of unix seconds.

    Compared as integers because fractions of different lengths do not sort as strings.
    """
    value = value.strip()
    m = _TIME.match(value)
    if m is None:
        try:
            return int(float(value) * 1_000_000_000)
        except ValueError:
            raise ValueError(f"not an RFC 3339 time or unix timestamp: {value!r}") from None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    seconds = int(datetime.fromisoformat(m.group(1) + zone).timestamp())
    fraction = (m.group(2) or "").ljust(9, "0")
    return seconds * 1_000_000_000 + int(fraction)


def _records_backwards(path: Path, end: int) -> Iterator[bytes]:
    """Complete records of ``path[:end]``, last first, read in blocks from the end."""
    with path.open("rb") as f:
        pos = end
        rest = b""
        # A record still being written (no newline yet) is not complete: skip it.
        if pos > 0:
            f.seek(pos - 1)
            if f.read(1) != b"\n":
                while pos > 0:
                    start = max(0, pos - _BLOCK)
                    f.seek(start)
                    block = f.read(pos - start)
                    cut = block.rfind(b"\n")
                    if cut >= 0:
                        pos = start + cut + 1
                        break
                    pos = start
        while pos > 0:
            start = max(0, pos - _BLOCK)
            f.seek(start)
            block = f.read(pos - start) + rest
            pos = start
            lines = block.split(b"\n")
            # lines[-1] is b"" (the block ends at a newline or at a previous block's first record).
            rest = lines[0] if start > 0 else b""
            for line in reversed(lines[1:] if start > 0 else lines):
                if line:
                    yield line
        if rest:
            yield rest


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_log(
    path: Path, *, tail: int | None = None, since: str = "", until: int | None = None
) -> list[LogEntry]:
    """The records of ``path``, oldest first.

    ``tail`` keeps the last N lines (a line being P records followed by their F record), ``since``
    drops records older than that time, ``until`` stops at a byte offset: pass ``log_size()`` taken
    before, and then ``follow_log(offset=that)``, to continue without a gap or a duplicate.
    """
    end = log_size(path) if until is None else min(until, log_size(path))
    if end == 0 or tail == 0:
        return []
    try:
        since_ns = parse_time(since) if since else None
    except ValueError as exc:
        raise InvalidInput(f"since: {exc}") from None
    out: list[LogEntry] = []
    lines = 0
    for raw in _records_backwards(path, end):
        entry = parse_line(raw)
        if entry is None:
            continue
        if since_ns is not None and parse_time(entry.time) < since_ns:
            continue
        # Walking backwards, an F record (or a trailing P) opens the next line to collect.
        if not entry.partial or not out:
            if tail is not None and lines == tail:
                break
            lines += 1
        out.append(entry)
    out.reverse()
    return out


async def follow_log(
    path: Path,
    *,
    offset: int,
    stopped: Callable[[], bool],
    poll: float = 0.05,
    pause: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncIterator[LogEntry]:
    """Records appended after ``offset``, as they come; ends once ``stopped()`` and the file is drained.

    Polls rather than using inotify: it is one stat-free read per interval, works on every filesystem,
    and the writer is another process (the container's init) that cannot notify us. ``pause(poll)``
    replaces the sleep between reads: the agent's returns early when the container exits, so a
    follower (``docker run``'s attach) ends at once instead of at the next tick.
    """
    sleep = pause or asyncio.sleep
    while not path.exists():
        if stopped():
            return
        await sleep(poll)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        buffer = b""
        final = False
        while True:
            chunk = os.read(fd, _BLOCK)
            if chunk:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    entry = parse_line(raw)
                    if entry is not None:
                        yield entry
                continue
            if final:
                return
            # Read once more after seeing the stop, so nothing written just before it is lost.
            if stopped():
                final = True
                continue
            await sleep(poll)
    finally:
        os.close(fd)
