"""Fan-out of one transfer's progress to everyone waiting on it.

Concurrent pulls of the same image share one job; each caller subscribes to the job's events. A caller
that joins late first gets the latest event of every layer, so its display starts where the job is.
Subscribers never slow the job down: each has an unbounded queue of small events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from atoll.model.registry import TransferEvent

R = TypeVar("R")
_END = object()


class Broadcast(Generic[R]):
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[TransferEvent | object]] = set()
        self._latest: dict[str, TransferEvent] = {}
        self.task: asyncio.Task[R] | None = None

    def publish(self, event: TransferEvent) -> None:
        self._latest[event.id] = event
        for queue in self._queues:
            queue.put_nowait(event)

    def start(self, work: Callable[[Broadcast[R]], Awaitable[R]]) -> asyncio.Task[R]:
        async def run() -> R:
            try:
                return await work(self)
            finally:
                for queue in self._queues:
                    queue.put_nowait(_END)

        self.task = asyncio.ensure_future(run())
        return self.task

    async def follow(self) -> AsyncIterator[TransferEvent | R]:
        """Events until the job ends, then its result (or its exception, raised)."""
        assert self.task is not None
        queue: asyncio.Queue[TransferEvent | object] = asyncio.Queue()
        for event in self._latest.values():
            queue.put_nowait(event)
        if self.task.done():
            queue.put_nowait(_END)
        self._queues.add(queue)
        try:
            while (item := await queue.get()) is not _END:
                assert isinstance(item, TransferEvent)
                yield item
        finally:
            self._queues.discard(queue)
        yield await asyncio.shield(self.task)
