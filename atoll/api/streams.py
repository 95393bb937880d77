"""Docker's multiplexed stream framing, shared by logs (and by the Docker API layer).

Each frame is an 8-byte header (stream id, three zero bytes, big-endian uint32 payload length) and the
payload. With timestamps, each log payload starts with the entry's RFC 3339 time and a space.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator

from atoll.model.errors import AtollError
from atoll.model.instance import LogEntry
from atoll.schemas import STREAM_STDERR, STREAM_STDOUT

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">BxxxI")


def frame(stream_id: int, payload: bytes) -> bytes:
    return _HEADER.pack(stream_id, len(payload)) + payload


def stream_id(name: str) -> int:
    return STREAM_STDERR if name == "stderr" else STREAM_STDOUT


def log_frame(entry: LogEntry, timestamps: bool) -> bytes:
    payload = (entry.time.encode() + b" " + entry.data) if timestamps else entry.data
    return frame(stream_id(entry.stream), payload)


async def log_frames(entries: AsyncIterator[LogEntry], timestamps: bool) -> AsyncIterator[bytes]:
    """Frames for a streaming body. Once headers are sent an error can only end the stream early."""
    try:
        async for entry in entries:
            if entry.data:
                yield log_frame(entry, timestamps)
    except AtollError as e:
        log.warning("log stream ended early: %s", e.message)
