"""Reading CRI-format logs and exit files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from atoll.agent.runtime.exitfile import read_exit_file
from atoll.agent.runtime.logs import follow_log, log_size, parse_line, parse_time, read_log
from atoll.model.errors import InvalidInput
from atoll.model.instance import LogEntry


def record(n: int, stream: str = "stdout", tag: str = "F", content: bytes | None = None) -> bytes:
    body = content if content is not None else f"line {n}".encode()
    return f"2026-11-22T10:11:{n // 1000 % 60:02d}.{n:09d}Z {stream} {tag} ".encode() + body + b"\n"


def test_parse_line() -> None:
    assert parse_line(b"2026-11-22T10:11:12.123456789Z stdout F hello world\n") == LogEntry(
        time="2026-11-22T10:11:12.123456789Z", stream="stdout", data=b"hello world\n"
    )
    assert parse_line(b"2026-11-22T10:11:12.1Z stderr P  two  spaces") == LogEntry(
        time="2026-11-22T10:11:12.1Z", stream="stderr", data=b" two  spaces", partial=True
    )
    assert parse_line(b"2026-11-22T10:11:12Z stdout F ") == LogEntry(
        time="2026-11-22T10:11:12Z", stream="stdout", data=b"\n"
    )
    assert parse_line(b"2026-11-22T10:11:12Z stdout F") is not None
    for bad in (b"", b"garbage", b"t stdin F x", b"t stdout X x", b"\xff stdout F x"):
        assert parse_line(bad) is None


def test_parse_time() -> None:
    assert parse_time("1970-01-01T00:00:01Z") == 1_000_000_000
    assert parse_time("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert parse_time("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert parse_time("1970-01-01T01:00:01+01:00") == 1_000_000_000
    assert parse_time("1.25") == 1_250_000_000
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_read_log_tail_since_until(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"".join(record(n) for n in range(1, 11)))
    assert [e.data for e in read_log(log)][:2] == [b"line 1\n", b"line 2\n"]
    assert [e.data for e in read_log(log, tail=3)] == [b"line 8\n", b"line 9\n", b"line 10\n"]
    assert read_log(log, tail=0) == []
    assert len(read_log(log, tail=100)) == 10
    assert [e.data for e in read_log(log, since="2026-11-22T10:11:00.000000009Z")] == [
        b"line 9\n",
        b"line 10\n",
    ]
    assert len(read_log(log, until=len(record(1)) * 2)) == 2
    assert read_log(tmp_path / "missing") == []
    with pytest.raises(InvalidInput, match="since: not an RFC 3339 time"):
        read_log(log, since="last tuesday")
    assert log_size(tmp_path / "missing") == 0


def test_tail_counts_lines_not_records(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(
        record(1)
        + record(2, tag="P", content=b"a")
        + record(3, tag="P", content=b"b")
        + record(4, content=b"c")
        + record(5, tag="P", content=b"unterminated")
    )
    assert [e.data for e in read_log(log, tail=1)] == [b"unterminated"]
    assert [e.data for e in read_log(log, tail=2)] == [b"a", b"b", b"c\n", b"unterminated"]
    assert len(read_log(log, tail=3)) == 5


def test_tail_of_a_big_file_and_a_half_written_record(tmp_path: Path) -> None:
    log = tmp_path / "log"
    long = b"x" * 16384
    with log.open("wb") as f:
        for n in range(20000):
            f.write(record(n, content=long if n % 100 == 0 else None))
        f.write(b"2026-11-22T10:11:12Z stdout F half-writ")
    entries = read_log(log, tail=150)
    assert len(entries) == 150
    assert entries[-1].data == b"line 19999\n"
    assert entries[0].data == b"line 19850\n"
    assert entries[50].data == long + b"\n"


def test_follow_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(record(1))
    offset = log_size(log)
    stopped = False

    async def writer() -> None:
        nonlocal stopped
        await asyncio.sleep(0.05)
        with log.open("ab") as f:
            f.write(record(2)[:10])
            f.flush()
            await asyncio.sleep(0.05)
            f.write(record(2)[10:] + record(3))
        stopped = True

    async def body() -> list[LogEntry]:
        task = asyncio.ensure_future(writer())
        got = [e async for e in follow_log(log, offset=offset, stopped=lambda: stopped, poll=0.01)]
        await task
        return got

    assert [e.data for e in asyncio.run(body())] == [b"line 2\n", b"line 3\n"]


def test_follow_log_of_a_file_never_written(tmp_path: Path) -> None:
    async def body() -> list[LogEntry]:
        return [e async for e in follow_log(tmp_path / "none", offset=0, stopped=lambda: True)]

    assert asyncio.run(body()) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [("0 0\n", (0, 0)), ("137 9\n", (137, 9)), ("3 0", (3, 0)), ("", None), ("x y\n", None), ("3\n", None)],
)
def test_read_exit_file(tmp_path: Path, content: str, expected: tuple[int, int] | None) -> None:
    (tmp_path / "exit").write_text(content)
    assert read_exit_file(tmp_path / "exit") == expected
    assert read_exit_file(tmp_path / "missing") is None
