"""Big answers built off the event loop.

The API, the Docker API, the cluster's heartbeats and (in ``atoll up``) the agent share one event loop.
A listing of every instance is a query, a view per row and the JSON of them all: at 50,000 rows about
12 s of Python during which nothing else on the loop ran. Such work runs here instead, in a small pool
of its own threads: the loop goes on answering (the GIL is handed over every few milliseconds), and
the pool being separate, big lists cannot take the threads that ``asyncio.to_thread`` work (the
agent's kernel calls) waits for. Two threads: more would only share the same GIL.

The work holds its database session in the thread, for one short read as before; nothing of it is
held across the answer's sending. Rows are read, viewed and serialised a batch at a time (``json_list``):
pydantic's serialiser holds the GIL for the whole of one call (about a second for 50,000 instances),
and so do the collector's full passes, which walk every live object (all 50,000 views, if they were
all alive at once); the loop's thread would wait that long. The Docker API's lists are plain dicts,
written with ``json.dumps`` (C, one call holds the GIL too): ``dumps_list`` writes them a row at a time.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from pydantic import TypeAdapter

P = ParamSpec("P")
T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atoll-offload")


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in the offload pool, awaited."""
    return await asyncio.get_running_loop().run_in_executor(_pool, functools.partial(fn, *args, **kwargs))


def json_list(adapter: TypeAdapter[list[T]], batches: Iterable[Sequence[T]]) -> bytes:
    """The bytes of ``adapter.dump_json(all items, by_alias=True)`` (as FastAPI answers a list), made a
    batch at a time: each batch's ``[...]`` without its brackets, joined by commas."""
    parts = [adapter.dump_json(list(batch), by_alias=True)[1:-1] for batch in batches if batch]
    return b"[" + b",".join(parts) + b"]"


def dumps_list(items: Iterable[Any]) -> bytes:
    """The bytes of ``json.dumps(list(items))``, made an item at a time: one ``json.dumps`` holds the GIL
    for the whole call (the loop's thread waits that long), one row takes microseconds. The default
    separators are ``", "`` between items; ``ensure_ascii`` keeps the text ASCII, so its encoding is
    UTF-8's."""
    return ("[" + ", ".join(json.dumps(item) for item in items) + "]").encode()
