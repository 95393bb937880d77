from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.client import FrameDecoder, FramingError, encode_frame


def test_whole_frames_in_one_chunk() -> None:
    data = encode_frame(1, b"out\n") + encode_frame(2, b"err\n")
    assert FrameDecoder().feed(data) == [(1, b"out\n"), (2, b"err\n")]


def test_frame_split_inside_header_and_payload() -> None:
    data = encode_frame(1, b"hello world") + encode_frame(2, b"x")
    decoder = FrameDecoder()
    assert decoder.feed(data[:3]) == []
    assert decoder.feed(data[3:12]) == []
    assert decoder.pending == 12
    assert decoder.feed(data[12:20]) == [(1, b"hello world")]
    assert decoder.feed(data[20:]) == [(2, b"x")]
    decoder.close()


def test_byte_by_byte() -> None:
    data = encode_frame(1, b"a" * 300) + encode_frame(2, b"b")
    decoder = FrameDecoder()
    frames = [f for i in range(len(data)) for f in decoder.feed(data[i : i + 1])]
    assert frames == [(1, b"a" * 300), (2, b"b")]


def test_large_length_uses_all_four_bytes() -> None:
    payload = b"z" * 70_000
    assert FrameDecoder().feed(encode_frame(1, payload)) == [(1, payload)]


def test_empty_frames_are_dropped() -> None:
    assert FrameDecoder().feed(encode_frame(1, b"") + encode_frame(1, b"x")) == [(1, b"x")]


def test_truncated_stream_is_an_error_at_close() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(1, b"abcdef")[:-2])
    with pytest.raises(FramingError, match="ended inside a frame"):
        decoder.close()


def test_raw_bytes_are_rejected() -> None:
    with pytest.raises(FramingError, match="bad frame header"):
        FrameDecoder().feed(b"hello, world\n")


@given(
    frames=st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(min_size=1, max_size=64)), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_any_chunking_gives_the_same_frames(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    data = b"".join(encode_frame(s, p) for s, p in frames)
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    decoder = FrameDecoder()
    out = [f for a, b in itertools.pairwise(bounds) for f in decoder.feed(data[a:b])]
    decoder.close()
    assert out == frames
