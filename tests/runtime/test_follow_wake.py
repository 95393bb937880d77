"""A log follower ends as soon as it is woken, not at its next poll; and removed trees go to the trash."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from atoll.agent.runtime.logs import follow_log, log_size
from atoll.agent.trash import Trash
from tests.runtime.test_logs import record


def test_follow_ends_when_woken_not_at_the_next_poll(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(record(1))
    offset = log_size(log)
    ended = asyncio.Event()

    async def pause(poll: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), poll)

    async def body() -> tuple[list[bytes], float]:
        async def writer() -> None:
            await asyncio.sleep(0.05)
            with log.open("ab") as f:
                f.write(record(2))
            ended.set()

        task = asyncio.ensure_future(writer())
        t0 = time.monotonic()
        got = [
            e.data async for e in follow_log(log, offset=offset, stopped=ended.is_set, poll=30.0, pause=pause)
        ]
        await task
        return got, time.monotonic() - t0

    got, took = asyncio.run(body())
    assert got == [b"line 2\n"], "what was written before the wake-up is not lost"
    assert took < 5, f"the follower waited for its 30 s poll ({took:.1f} s)"


def test_trash_takes_a_tree_at_once_and_empties_later(tmp_path: Path) -> None:
    tree = tmp_path / "instances" / "abc"
    (tree / "upper" / "deep").mkdir(parents=True)
    (tree / "upper" / "deep" / "f").write_bytes(b"x")
    trash = Trash(tmp_path / "trash")
    taken = trash.take(tree)
    assert taken is not None and taken.parent == trash.root
    assert not tree.exists()
    assert (taken / "upper" / "deep" / "f").read_bytes() == b"x"
    assert trash.take(tree) is None, "nothing to take twice"
    asyncio.run(trash.empty())
    assert list(trash.root.iterdir()) == []
    asyncio.run(Trash(tmp_path / "never-made").empty())
