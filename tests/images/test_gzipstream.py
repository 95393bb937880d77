"""The ISA-L-based gzip reader accepts and refuses what GzipFile does."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from atoll.agent.images.gzipstream import OUT_LIMIT, GzipReader


def read_all(data: bytes, size: int = 1000) -> bytes:
    reader = GzipReader(io.BytesIO(data))
    parts = []
    while chunk := reader.read(size):
        assert len(chunk) <= size
        parts.append(chunk)
    return b"".join(parts)


def test_members_padding_and_small_reads() -> None:
    a, b = os.urandom(300_000), b"z" * 5_000_000
    data = gzip.compress(a) + gzip.compress(b) + b"\0" * 700
    assert read_all(data) == a + b
    assert GzipReader(io.BytesIO(data)).read() == a + b
    assert read_all(b"") == b""


def test_a_bomb_is_read_in_bounded_pieces() -> None:
    reader = GzipReader(io.BytesIO(gzip.compress(bytes(50 << 20))))
    assert len(reader.read(1 << 30)) <= OUT_LIMIT


def test_truncated_and_corrupt_streams_raise() -> None:
    data = gzip.compress(os.urandom(100_000))
    with pytest.raises(EOFError):
        read_all(data[: len(data) // 2])
    broken = bytearray(data)
    broken[-6] ^= 0xFF  # the CRC-32
    with pytest.raises(zlib.error):
        read_all(bytes(broken))
    with pytest.raises(zlib.error):
        read_all(data + b"garbage that is no gzip member")
