"""A gzip decoder that reads its input in large chunks, inflating with ISA-L (``isal``) instead of zlib.

``gzip.GzipFile`` reads its input 8 KiB at a time through several layers of Python, which for a layer
of incompressible data costs more than the inflating itself. This reader hands the inflater large
chunks and bounds each call's output (a gzip bomb can't fill memory). It accepts what ``GzipFile``
accepts: several concatenated members, and zero bytes padding the end. The inflater checks each
member's header, CRC-32 and length; a stream that ends inside a member is an ``EOFError``, like
``GzipFile``'s.

Why ISA-L: measured on this project's 2-core VM with the same streaming loop (1 MiB in, at most 4 MiB
out per call), it inflates 2.4x faster than zlib on incompressible layers (1,260 against 530 MB/s)
and 2.8x on a real one (a tar of Python's standard library: 316 against 113 MB/s); zlib-ng gave 1,315
and 159. Its ``isal_zlib`` module is a drop-in for ``zlib``'s decompress objects.
"""

from __future__ import annotations

import zlib
from typing import cast

from isal import isal_zlib

from atoll.agent.images.streams import CHUNK, Reader

OUT_LIMIT = 4 << 20
"""Most bytes one inflate call may produce."""
_GZIP = 16 + zlib.MAX_WBITS
_ISAL_ERROR = cast(type[Exception], isal_zlib.error)  # the stubs don't say it is an exception class


class GzipReader:
    def __init__(self, raw: Reader) -> None:
        self._raw = raw
        self._d = isal_zlib.decompressobj(_GZIP)
        self._buf = b""
        self._pos = 0
        self._done = False
        self._fed = False

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if self._pos >= len(self._buf) and not self._fill():
            return b""
        end = min(self._pos + size, len(self._buf))
        out = self._buf[self._pos : end] if self._pos or end < len(self._buf) else self._buf
        self._pos = end
        return out

    def _fill(self) -> bool:
        while not self._done:
            if self._d.eof:
                data = self._next_member()
                if data is None:
                    self._done = True
                    return False
            else:
                data = self._d.unconsumed_tail or self._raw.read(CHUNK)
                if not data and not self._fed:
                    self._done = True  # an empty stream, as GzipFile reads it
                    return False
                self._fed = True
                if not data:
                    out = self._inflate(b"")  # anything the inflater still holds
                    if out:
                        self._buf, self._pos = out, 0
                        return True
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            out = self._inflate(data)
            if out:
                self._buf, self._pos = out, 0
                return True
        return False

    def _inflate(self, data: bytes) -> bytes:
        try:
            return self._d.decompress(data, OUT_LIMIT)
        except _ISAL_ERROR as exc:  # the same type as zlib's, for callers telling corrupt data apart
            raise zlib.error(str(exc)) from exc

    def _next_member(self) -> bytes | None:
        """After a member: the start of the next one, or None at the end (zero padding allowed)."""
        data = self._d.unused_data
        while True:
            data = data.lstrip(b"\0")
            if data:
                self._d = isal_zlib.decompressobj(_GZIP)
                return data
            data = self._raw.read(CHUNK)
            if not data:
                return None
