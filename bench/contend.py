"""Reproducible contention for benchmarks: CPU hogs (and an optional disk writer) that behave like
another engineer's job on a shared host.

Why sessions: this VM schedules with autogroup (``/proc/sys/kernel/sched_autogroup_enabled`` = 1), so
the CPU is shared between *sessions*, not processes: a benchmark's pull gets its session's share however
many processes it runs. Each hog is therefore started with ``setsid`` (a session, hence a scheduling
group, of its own) and runs ``procs`` busy loops (a Python process forking ``procs - 1`` more), enough
to keep every core busy on its own, the way a test suite of another engineer competes. The optional
writer (``io=True``) is one more session that rewrites a file with ``dd ... conv=fdatasync`` in a loop:
dirty pages and a busy disk queue, as a suite that unpacks images or writes databases makes them.

Everything is killed (its whole process group) by :meth:`Contention.stop`. Hogs also die with the
benchmark if it is killed (``PR_SET_PDEATHSIG``: the leader with the benchmark, its loops with the
leader); the writer's shell does too, and its last ``dd`` ends after at most 256 MB.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1
HOG = """
import ctypes, os, signal, sys
for _ in range(int(sys.argv[1]) - 1):  # one busy loop per process, all in this session
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the hog's leader
        break
while True:
    pass
"""


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Contention:
    """``hogs`` sessions of ``procs`` busy loops each, plus an optional disk writer in ``scratch``."""

    def __init__(self, hogs: int, *, procs: int = 0, io: bool = False, scratch: Path | None = None):
        self.hogs = hogs
        self.procs = procs or os.cpu_count() or 1
        self.io = io
        self.scratch = scratch
        self._groups: list[subprocess.Popen[bytes]] = []

    def describe(self) -> str:
        text = f"{self.hogs} hog(s) x {self.procs} busy loop(s)"
        return text + (" + a disk writer" if self.io else "")

    def start(self) -> None:
        for _ in range(self.hogs):
            self._spawn([sys.executable, "-c", HOG, str(self.procs)])
        if self.io:
            assert self.scratch is not None
            target = self.scratch / "contend-io"
            writer = (
                f"while :; do dd if=/dev/zero of={target} bs=1M count=256 conv=fdatasync status=none; done"
            )
            self._spawn(["sh", "-c", writer])

    def stop(self) -> None:
        for proc in self._groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._groups.clear()
        if self.scratch is not None:
            (self.scratch / "contend-io").unlink(missing_ok=True)

    def _spawn(self, argv: list[str]) -> None:
        proc = subprocess.Popen(
            argv,
            start_new_session=True,  # a session, so a group for autogroup, and a process group to kill
            preexec_fn=_die_with_parent,
            stdin=subprocess.DEVNULL,
        )
        self._groups.append(proc)

    def __enter__(self) -> Contention:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
