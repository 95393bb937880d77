"""Tar a directory on the fly, as a stream of chunks.

``tarfile`` wants a file to write into, an HTTP upload wants an iterator to read from. A worker thread
writes the archive into a bounded queue and the generator hands the chunks on, so a rootfs of any size
goes out with only a few chunks in memory, and a slow upload slows the tarring down.

Entries keep numeric ownership, modes, mtimes, symlinks and hard links. User and group *names* are left
blank: they come from this machine's passwd files, not the image's, and would only mislead an extractor
that prefers names. Sockets and device nodes are skipped (the API refuses device nodes anyway) and
reported through ``on_skip``.
"""

from __future__ import annotations

import io
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from atoll.client.uploads import CHUNK_SIZE

if TYPE_CHECKING:
    from typing_extensions import Buffer

SkipCallback = Callable[[str, str], None]
"""Called with (archive name, reason) for each entry left out."""

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_QUEUE_DEPTH = 8


class _Cancelled(Exception):
    pass


class _Done:
    pass


_DONE = _Done()


def walk(root: Path) -> Iterator[tuple[Path, str]]:
    """Every entry below ``root`` (not ``root`` itself) as (path, archive name), parents first, sorted."""
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for entry in entries:
            arcname = f"{prefix}{entry.name}"
            yield Path(entry.path), arcname
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((Path(entry.path), f"{arcname}/"))
        stack.extend(reversed(subdirs))


def estimate_tar_size(root: Path) -> int:
    """About the size of ``tar_directory(root)``: a header per entry plus padded file contents."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for path, _ in walk(root):
        st = path.lstat()
        total += _BLOCK
        if stat.S_ISREG(st.st_mode) and (st.st_nlink == 1 or (st.st_ino, st.st_dev) not in seen):
            seen.add((st.st_ino, st.st_dev))
            total += -(-st.st_size // _BLOCK) * _BLOCK
    total += 2 * _BLOCK
    return -(-total // _RECORD) * _RECORD


class _QueueWriter(io.RawIOBase):
    """The file ``tarfile`` writes into: gathers bytes into chunks and puts them on the queue."""

    def __init__(self, q: queue.Queue[bytes | BaseException | _Done], cancel: threading.Event) -> None:
        super().__init__()
        self._q = q
        self._cancel = cancel
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer, /) -> int:
        view = memoryview(data)
        self._buf += view
        if len(self._buf) >= CHUNK_SIZE:
            self.flush()
        return view.nbytes

    def flush(self) -> None:
        if self._buf:
            self.put(bytes(self._buf))
            self._buf.clear()

    def put(self, item: bytes | BaseException | _Done) -> None:
        while True:
            if self._cancel.is_set():
                raise _Cancelled
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def _write_archive(root: Path, writer: _QueueWriter, on_skip: SkipCallback | None) -> None:
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, arcname in walk(root):
            mode = path.lstat().st_mode
            if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                if on_skip is not None:
                    on_skip(arcname, "socket" if stat.S_ISSOCK(mode) else "device node")
                continue
            info = tar.gettarinfo(str(path), arcname)
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def tar_directory(root: Path | str, *, on_skip: SkipCallback | None = None) -> Iterator[bytes]:
    """Yield ``root``'s tree as a tar archive (member names relative to ``root``, without ``./``)."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    return _stream(root, on_skip)


def _stream(root: Path, on_skip: SkipCallback | None) -> Iterator[bytes]:
    q: queue.Queue[bytes | BaseException | _Done] = queue.Queue(maxsize=_QUEUE_DEPTH)
    cancel = threading.Event()
    writer = _QueueWriter(q, cancel)

    def produce() -> None:
        try:
            _write_archive(root, writer, on_skip)
            writer.flush()
            writer.put(_DONE)
        except _Cancelled:
            return
        except BaseException as exc:
            try:
                writer.put(exc)
            except _Cancelled:
                return

    worker = threading.Thread(target=produce, name=f"atoll-tar:{root}", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancel.set()
        worker.join()
