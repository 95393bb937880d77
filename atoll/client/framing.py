"""Docker's multiplexed stream framing, as used by the log endpoint.

Each frame is an 8-byte header (stream id, three zero bytes, big-endian uint32 payload length) followed by
the payload. HTTP chunks do not respect frame boundaries, so the decoder keeps whatever is incomplete and
waits for more.
"""

from __future__ import annotations

import struct

from atoll.schemas import STREAM_STDERR, STREAM_STDIN, STREAM_STDOUT

HEADER = struct.Struct(">BxxxL")
_KNOWN_STREAMS = (STREAM_STDIN, STREAM_STDOUT, STREAM_STDERR)


class FramingError(ValueError):
    """The byte stream is not in the multiplexed framing (or was cut in the middle of a frame)."""


def encode_frame(stream: int, payload: bytes) -> bytes:
    return HEADER.pack(stream, len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get back the frames completed so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= HEADER.size:
            if buf[pos] not in _KNOWN_STREAMS or buf[pos + 1 : pos + 4] != b"\0\0\0":
                raise FramingError(f"bad frame header {bytes(buf[pos : pos + HEADER.size])!r}")
            stream, length = HEADER.unpack_from(buf, pos)
            end = pos + HEADER.size + length
            if len(buf) < end:
                break
            if length:
                frames.append((stream, bytes(buf[pos + HEADER.size : end])))
            pos = end
        del buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of their frame."""
        return len(self._buf)

    def close(self) -> None:
        """Call at end of stream: a partial frame left over means the stream was truncated."""
        if self._buf:
            raise FramingError(f"stream ended inside a frame ({len(self._buf)} bytes left over)")
