"""Early writeback (``syncfs.start_writeback``) runs on a background thread on a duplicate fd."""

from __future__ import annotations

import os
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
