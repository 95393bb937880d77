"""The agent's end of an instance's stdin: frames written into the FIFO that the container's init
relays to the main process (see ``init/atoll-init.c`` and docs/runtime.md).

A frame is a 4-byte big-endian length and the payload; length 0 means end-of-file. A length with the
top bit set is a control frame: ``RESIZE`` carries rows and columns for the pty of a TTY instance.
Each frame is one
``write`` of at most ``PIPE_BUF`` bytes, which the kernel keeps whole, so several writers (two attached
clients, or a writer from before an agent restart) never interleave inside a frame. The FIFO is opened
per call: holding no fd means nothing to clean up and nothing that pins a stopped instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import struct
from pathlib import Path

from atoll.model.errors import Conflict

FRAME_MAX = select.PIPE_BUF - 4
RESIZE = 0x80000004


def make_fifo(path: Path) -> int:
    """The FIFO, made if missing, opened read-write for the init (a read-write open never blocks)."""
    with contextlib.suppress(FileExistsError):
        os.mkfifo(path, 0o600)
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


async def _writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def fire() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, fire)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _open(path: Path, instance_id: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):  # no reader: the instance is not running
            raise Conflict(f"instance {instance_id[:12]} is not running with stdin open") from None
        raise


async def _write_frames(path: Path, instance_id: str, frames: list[bytes]) -> None:
    fd = _open(path, instance_id)
    try:
        for f in frames:
            while True:
                try:
                    os.write(fd, f)  # <= PIPE_BUF: all or nothing
                    break
                except BlockingIOError:
                    await _writable(fd)
                except BrokenPipeError:
                    raise Conflict(f"instance {instance_id[:12]} is no longer running") from None
    finally:
        os.close(fd)


async def write_stdin(path: Path, instance_id: str, data: bytes) -> None:
    frames = [
        struct.pack(">I", len(chunk)) + chunk
        for chunk in (data[i : i + FRAME_MAX] for i in range(0, len(data), FRAME_MAX))
    ]
    await _write_frames(path, instance_id, frames)


async def close_stdin(path: Path, instance_id: str) -> None:
    await _write_frames(path, instance_id, [struct.pack(">I", 0)])


def initial_size(fd: int, rows: int, cols: int) -> None:
    """Queue a resize in a FIFO nobody reads yet: the init applies what is queued before it forks."""
    os.write(fd, struct.pack(">IHH", RESIZE, rows, cols))


async def resize_tty(path: Path, instance_id: str, rows: int, cols: int) -> None:
    await _write_frames(path, instance_id, [struct.pack(">IHH", RESIZE, rows, cols)])
