"""Early writeback (``syncfs.start_writeback``) runs on a background thread on a duplicate fd;
``release_after_writeback`` writes a range out and drops it from the page cache."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from atoll.agent.images import syncfs


def test_writeback_leaves_the_callers_fd_alone_and_closes_its_duplicates(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    fds = []
    for n in range(20):
        fd = os.open(tmp_path / f"f{n}", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, os.urandom(300_000))
        syncfs.start_writeback(fd)
        os.write(fd, b"more")  # still ours
        fds.append(fd)
    for fd in fds:
        os.close(fd)
    deadline = time.monotonic() + 30
    while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(os.listdir("/proc/self/fd")) <= before
    assert (tmp_path / "f0").stat().st_size == 300_004
    syncfs.syncfs(tmp_path)


def _cached_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache (util-linux's fincore: mincore over a mapping of it)."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip())


def test_released_ranges_are_written_and_leave_the_page_cache(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = os.urandom(24 << 20)
    with open(path, "wb") as f:
        f.write(data[: 16 << 20])
        f.flush()
        syncfs.release_after_writeback(f.fileno(), 0, 16 << 20)
        f.write(data[16 << 20 :])  # not released: stays cached
        f.flush()
    assert _cached_bytes(path) >= 8 << 20
    deadline = time.monotonic() + 30
    while _cached_bytes(path) > 8 << 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _cached_bytes(path) <= 8 << 20  # no more than the part not released
    assert path.read_bytes() == data
