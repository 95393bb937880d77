"""Streaming decompression of layers and archives, with corrupt input reported as :class:`BadImage`.

gzip, bzip2 and xz come from the standard library. zstd (``+zstd`` OCI layers) needs the ``zstd``
command (Debian package ``zstd``): it runs as a filter fed from a thread, so the layer still streams and
nothing is held in memory. Decompressor errors are recognised by type (and, for bz2, by being an
``OSError`` without an errno) so that a real read error of the host's disk is never blamed on the image.
"""

from __future__ import annotations

import bz2
import enum
import io
import lzma
import shutil
import subprocess
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, cast

from atoll.agent.images.gzipstream import GzipReader
from atoll.agent.images.streams import CHUNK, Reader
from atoll.model.errors import BadImage


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


_MAGIC = [
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
]
SNIFF_BYTES = 6


def sniff(head: bytes) -> Compression:
    """Guess from the first bytes, as ``docker load`` does. A tar header starts with a file name."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def _is_decoder_error(exc: BaseException) -> bool:
    if isinstance(exc, EOFError | zlib.error | lzma.LZMAError):
        return True
    return isinstance(exc, OSError) and exc.errno is None  # BadGzipFile, bz2's "Invalid data stream"


class _Checked:
    def __init__(self, inner: Reader, label: str, kind: Compression) -> None:
        self._inner = inner
        self._label = label
        self._kind = kind

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._inner.read(size)
        except Exception as exc:
            if _is_decoder_error(exc):
                raise BadImage(f"{self._label}: corrupt {self._kind.value} data: {exc}") from exc
            raise


class _ZstdFilter:
    """``zstd -dc`` with a feeder thread: we read its stdout while the thread writes our input to it."""

    def __init__(self, raw: Reader, label: str, binary: str) -> None:
        self._label = label
        self._proc = subprocess.Popen(
            [binary, "-d", "-c", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._feed_error: BaseException | None = None
        self._feeder = threading.Thread(target=self._feed, args=(raw,), name="zstd-feed", daemon=True)
        self._feeder.start()

    def _feed(self, raw: Reader) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while chunk := raw.read(CHUNK):
                stdin.write(chunk)
        except BrokenPipeError:
            pass  # zstd stopped early; its exit status says why
        except BaseException as exc:  # a read error of the source: re-raised in the reading thread
            self._feed_error = exc
        finally:
            with suppress(BrokenPipeError):
                stdin.close()

    def read(self, size: int = -1, /) -> bytes:
        out: IO[bytes] | None = self._proc.stdout
        assert out is not None
        data = out.read(size)
        if not data:
            self._feeder.join()
            if self._feed_error is not None:
                raise self._feed_error
            err: IO[bytes] | None = self._proc.stderr
            message = err.read(4096).decode(errors="replace").strip() if err else ""
            if self._proc.wait() != 0:
                raise BadImage(f"{self._label}: corrupt zstd data: {message or 'zstd failed'}")
        return data

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._feeder.join()
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def decompressed(raw: Reader, kind: Compression, label: str) -> Iterator[Reader]:
    """Yield a reader of the decompressed bytes of ``raw``."""
    if kind is Compression.NONE:
        yield raw
    elif kind is Compression.ZSTD:
        binary = shutil.which("zstd")
        if binary is None:
            raise BadImage(f"{label}: zstd layers need the zstd command (Debian package zstd) on the host")
        zstd = _ZstdFilter(raw, label, binary)
        try:
            yield zstd
        finally:
            zstd.close()
    elif kind is Compression.GZIP:
        yield _Checked(GzipReader(raw), label, kind)
    else:
        with _open_decoder(raw, kind) as stream:
            yield _Checked(stream, label, kind)


class _Forward:
    """A forward-only view of a reader: the stdlib decoders want ``seek``, and must never get it."""

    def __init__(self, inner: Reader) -> None:
        self.read = inner.read

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, /) -> int:
        raise io.UnsupportedOperation("seek")


def _open_decoder(raw: Reader, kind: Compression) -> io.BufferedIOBase:
    fwd = _Forward(raw)
    if kind is Compression.BZIP2:
        return bz2.BZ2File(fwd, mode="rb")
    return lzma.LZMAFile(cast(IO[bytes], fwd), mode="rb")  # typeshed wants a whole IO; read() is all it uses
