"""``syncfs(2)``: flush one file system (the store's), not every disk on the host as ``sync`` would.

And ``start_writeback``: ``sync_file_range(2)`` with ``SYNC_FILE_RANGE_WRITE``, which queues a file's
dirty pages for writing now, without waiting. An import or pull calls it on each file it has finished
writing, so the disk works while later files and layers are still arriving, and the one ``syncfs``
before the image record is written mostly finds the work done (it still waits for all of it, and for
the metadata, so nothing is less durable).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.syncfs.restype = ctypes.c_int
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_libc.sync_file_range.restype = ctypes.c_int
SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Queue the file's dirty pages for writing, without waiting (a hint: failures are ignored)."""
    _libc.sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


def syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
