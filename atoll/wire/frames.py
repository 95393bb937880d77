"""Binary framing for methods that stream bytes (``AsyncIterator[bytes]``, e.g. an image export).

JSON lines would cost base64 and a parse per chunk; these frames carry the bytes as they are. Each frame
is a kind byte and a 4-byte big-endian length, then the payload: DATA chunks, then END, or ERROR with a
JSON error body. A connection cut before END is an error, never a short but complete stream.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from typing import Any

DATA, END, ERROR = 0, 1, 2
HEADER = struct.Struct(">BI")
MEDIA_TYPE = "application/x-atoll-frames"


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def error_frame(body: dict[str, Any]) -> bytes:
    return frame(ERROR, json.dumps(body).encode())


async def read_frames(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """(kind, payload) for each frame; payloads of DATA frames may be split across network chunks,
    so they are reassembled here."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= HEADER.size:
            kind, size = HEADER.unpack_from(buffer)
            if len(buffer) < HEADER.size + size:
                break
            payload = bytes(buffer[HEADER.size : HEADER.size + size])
            del buffer[: HEADER.size + size]
            yield kind, payload
