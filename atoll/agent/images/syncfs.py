"""``syncfs(2)``: flush one file system (the store's), not every disk on the host as ``sync`` would.

And ``start_writeback``: ``sync_file_range(2)`` with ``SYNC_FILE_RANGE_WRITE``, which queues a file's
dirty pages for writing now, without waiting. An import or pull calls it on each file it has finished
writing, so the disk works while later files and layers are still arriving, and the one ``syncfs``
before the image record is written mostly finds the work done (it still waits for all of it, and for
the metadata, so nothing is less durable).

``sync_file_range`` is not free to call: it waits while the disk's request queue is full, which on a
busy host took 0.2-0.9 s per pull, all of it stalling the unpacking. So the call is made by a
background thread of the process on a duplicate of the file's fd; the caller only queues it. Measured
in alternation at load 12-14 (bench/pull.py's image, layers on threads), in line against no early
writeback at all: 3.2-4.3 s against 3.0-3.8 s (the final ``syncfs`` then waiting 0.2-0.6 s); from
this thread against none: 2.5-3.8 s against 3.1-3.8 s. Noisy, but in line was worst every time.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.syncfs.restype = ctypes.c_int
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_libc.sync_file_range.restype = ctypes.c_int
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_ALL = 1 | 2 | 4
"""WAIT_BEFORE | WRITE | WAIT_AFTER: the range is on disk (data only) when the call returns."""


PENDING_MAX = 256
"""Files waiting for the writeback thread; beyond that, a file's writeback is left to the kernel."""
_pending: queue.Queue[int] = queue.Queue(PENDING_MAX)
_started = threading.Lock()
_thread: threading.Thread | None = None
_releases: queue.Queue[tuple[int, int, int]] = queue.Queue(PENDING_MAX)
_release_thread: threading.Thread | None = None


def start_writeback(fd: int) -> None:
    """Have the file's dirty pages queued for writing soon, without waiting (a hint: failures are
    ignored). ``fd`` stays the caller's: the background thread works on a duplicate."""
    _ensure_thread()
    try:
        dup = os.dup(fd)
    except OSError:
        return
    try:
        _pending.put_nowait(dup)
    except queue.Full:
        os.close(dup)


def _ensure_thread() -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _started:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_write_back, name="writeback", daemon=True)
            _thread.start()


def _write_back() -> None:
    while True:
        fd = _pending.get()
        try:
            _libc.sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)
        finally:
            os.close(fd)


def release_after_writeback(fd: int, offset: int, length: int) -> None:
    """Write ``length`` bytes at ``offset`` of the file to disk and then drop them from the page cache,
    in the background (a hint: failures are ignored). For data nothing will read soon: a pull's kept
    blobs. Why it pays on a VM like the benchmark's (free page reporting, ``page_reporting_order=11``):
    memory the guest freed a while ago has been handed back to the host, and the first write to such a
    page faults in the host. Measured with dd, 400 MB into a new file: 0.48 s of system time on cold
    memory, 0.10 s into pages freed just before, 0.05 s over cached pages. A pull writes each layer
    twice (blob and unpacked files), so half its page-cache writes went to cold pages for bytes read
    again only by a push; released as they are written, the blob's pages are reused by the next ones.
    Its own thread: the call waits for the disk, which must not hold up ``start_writeback``."""
    global _release_thread
    if _release_thread is None or not _release_thread.is_alive():
        with _started:
            if _release_thread is None or not _release_thread.is_alive():
                _release_thread = threading.Thread(target=_release, name="release", daemon=True)
                _release_thread.start()
    try:
        dup = os.dup(fd)
    except OSError:
        return
    try:
        _releases.put_nowait((dup, offset, length))
    except queue.Full:
        os.close(dup)


def _release() -> None:
    while True:
        fd, offset, length = _releases.get()
        try:
            if _libc.sync_file_range(fd, offset, length, SYNC_FILE_RANGE_ALL) == 0:
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
