"""Opt-in profiling of a long-running process: ``ATOLL_PROFILE=/path/out.prof`` runs it under cProfile
and writes the statistics there when it exits (read them with ``python -m pstats``);
``ATOLL_TRACEMALLOC=/path/out.txt`` writes its largest live allocations instead. For load tests
(``bench/cluster_load.py --profile``); off by default, as both slow every call."""

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
    memory = os.environ.get("ATOLL_TRACEMALLOC", "")
    if memory:
        with _traced(memory):
            yield
        return
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


@contextlib.contextmanager
def _traced(target: str) -> Iterator[None]:
    """``ATOLL_TRACEMALLOC=/path/out.txt``: the 40 largest live Python allocations (by line) at exit."""
    import tracemalloc

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    tracemalloc.start(8)
    try:
        yield
    finally:
        snapshot = tracemalloc.take_snapshot()
        top = snapshot.statistics("traceback")[:40]
        with open(target, "w") as out:
            out.write(f"traced: {tracemalloc.get_traced_memory()}\n")
            for stat in top:
                out.write(f"{stat.size / 1e6:.1f} MB in {stat.count} blocks\n")
                out.writelines(f"    {line}\n" for line in stat.traceback.format())
        tracemalloc.stop()
