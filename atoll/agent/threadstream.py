"""A byte stream written by blocking code in a thread and read by the event loop, with back-pressure.

Tar writers (``tarfile``) are blocking and want a file. ``stream_writes`` runs such a writer in a
thread against a file whose writes land, in chunks, in a small bounded queue; the event loop yields
them as they come. If the reader stops early (the client hung up), the writer's next write raises and
the thread ends; ``done`` runs in the thread either way, for cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO, cast

CHUNK = 1 << 20
QUEUED = 8


class _Closed(Exception):
    """The reader went away: the writing thread stops."""


class _QueueWriter(io.RawIOBase):
    def __init__(self, q: queue.Queue[bytes | BaseException | None], closed: threading.Event) -> None:
        self._q = q
        self._closed = closed
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush_chunk()
        return len(data)

    def flush_chunk(self) -> None:
        while self._buf:
            if self._closed.is_set():
                raise _Closed()
            try:
                self._q.put(bytes(self._buf), timeout=0.5)
            except queue.Full:
                continue
            self._buf.clear()


async def stream_writes(write: Callable[[BinaryIO], None], done: Callable[[], None]) -> AsyncIterator[bytes]:
    """Run ``write(file)`` in a thread and yield what it writes; an exception it raises is raised here."""
    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=QUEUED)
    closed = threading.Event()

    def run() -> None:
        try:
            out = _QueueWriter(q, closed)
            write(cast(BinaryIO, out))
            out.flush_chunk()
            q.put(None)
        except _Closed:
            pass
        except BaseException as e:  # handed to the reader, which raises it
            if not closed.is_set():
                q.put(e)
        finally:
            done()
            if closed.is_set():  # wake a reader cancelled while it waited, whose get still blocks a thread
                with contextlib.suppress(queue.Full):
                    q.put_nowait(None)

    thread = threading.Thread(target=run, name="stream-writer", daemon=True)
    thread.start()
    try:
        while True:
            item = await asyncio.to_thread(q.get)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        closed.set()
        while not q.empty():
            q.get_nowait()
