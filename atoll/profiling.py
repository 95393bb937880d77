"""Opt-in profiling of a long-running process: ``ATOLL_PROFILE=/path/out.prof`` runs it under cProfile
and writes the statistics there when it exits (read them with ``python -m pstats``). For load tests
(``bench/cluster_load.py --profile``); off by default, as cProfile slows every call."""

from __future__ import annotations

import contextlib
import cProfile
import os
import signal
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def profiled() -> Iterator[None]:
    target = os.environ.get("ATOLL_PROFILE", "")
    if not target:
        yield
        return
    # uvicorn re-raises the SIGTERM it caught once it has shut down; by default that kills the process
    # before the statistics are written, so here it exits through the `finally` instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(target)
