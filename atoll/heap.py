"""Keeping a long-running Atoll process's heap close to what it holds live.

Design: measured in `atoll up` (bench/docker_compare.py, 20 detached starts on a fresh process), the
Python objects an idle container keeps alive are about 30-50 KB, yet the process grew by 300-380 KB
per container. The rest was allocator high water, not state:

- cyclic garbage. pyroute2's netlink messages form reference cycles, and every network attach and
  every reconcile dumped the host's links (a dump grows with the number of veths, so with the number
  of containers; link dumps now go through ``agent/net/linkdump.py``, which makes no cycles, but
  other pyroute2 calls, SQLAlchemy and asyncio still leave some). Only a full collection frees
  cycles, and CPython starts one when the objects that survived into the oldest generation exceed a
  quarter of those already there: with the ~200,000 objects of the imported server stack, megabytes
  of garbage pile up first, spread over pymalloc arenas that stay mapped once a single live object
  sits in each;
- glibc malloc keeps one arena per thread that ever allocated (the default executor's threads, the
  HTTP stack's worker thread): what those threads freed stays resident in their arenas.

So, once a process has started (``settle_after_startup``), the objects of the start-up are moved out
of the collector's view (``gc.freeze``: they are never freed, and they are the server's modules,
routes and tables, which live as long as the process), which makes full collections both cheap and
frequent enough; threads share at most two malloc arenas; and a background task
(``keep_heap_small``) collects cycles and hands free malloc pages back to the kernel
(``malloc_trim``) every ``TRIM_INTERVAL`` seconds, when allocation has happened since. Behaviour is otherwise
unchanged: nothing here frees anything that is still referenced.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""glibc's mallopt parameter for the number of arenas (malloc.h)."""
ARENAS = 2
"""Two arenas: the event loop's thread keeps its own, worker threads share the other (they are few
and hold the GIL for nearly all their Python work, so they hardly contend on malloc's lock)."""
TRIM_INTERVAL = 2.0
"""How often ``keep_heap_small`` looks, so that a burst of starts is followed within seconds by a heap
that has given back its slack. A round costs a few ms of CPU (a full collection of the objects made
since the start-up, ~10-20k with 20 containers, and the trim); it is skipped while nothing was
allocated, and the trim itself runs off the event loop."""


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    # Only glibc has these two; on another libc (musl) there is nothing to tune.
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


_LIBC = _libc()


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's per-thread arenas; call before the process starts threads. True if applied."""
    return _LIBC is not None and _LIBC.mallopt(M_ARENA_MAX, arenas) == 1


def settle_after_startup() -> int:
    """Collect what the start-up left, then freeze the survivors; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def malloc_trim() -> None:
    """Return free malloc pages of every arena to the kernel (ctypes lets go of the GIL meanwhile)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def trim() -> None:
    """One round: free unreachable cycles, then return free malloc pages to the kernel."""
    gc.collect()
    malloc_trim()


def _young_collections() -> int:
    """How many times the youngest generation was collected: it moves once per ~700 net new objects,
    so a cheap sign that the process did some work since the last look."""
    return int(gc.get_stats()[0]["collections"])


async def keep_heap_small(interval: float = TRIM_INTERVAL) -> None:
    """Collect and trim every ``interval`` seconds while the process allocates; idle, it does nothing."""
    seen = _young_collections()
    while True:
        await asyncio.sleep(interval)
        if _young_collections() == seen:
            continue
        t0 = time.perf_counter()
        gc.collect()
        await asyncio.to_thread(malloc_trim)
        seen = _young_collections()
        log.debug("heap trimmed in %.1f ms", (time.perf_counter() - t0) * 1000)
