"""The activity log: what happened to instances and images, for ``docker events`` (and later audit).

Services record an entry where the action takes effect (create, start, die, stop, kill, destroy,
rename, pause, unpause, update; image pull, tag, untag, delete; network create, connect, disconnect,
destroy; volume create, destroy; a run's network connect/disconnect and volume mount/unmount, see
``attachactivity``; the Docker API's attach), so actions made through the native
API and through the Docker API show up alike. The log is in memory, bounded, and owned by the one
controller process, like the instance events in ``context``: a listener replays what it kept (``since``)
and then follows live entries. Recording never blocks: a listener that falls ``QUEUE`` entries behind
(or was abandoned without closing) is dropped rather than slowing the controller down or growing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

KEEP = 4096
QUEUE = 1024


@dataclass(frozen=True)
class Activity:
    time_ns: int
    type: str
    """``container``, ``image``, ``network`` or ``volume``."""
    action: str
    id: str
    project: str
    attributes: dict[str, str] = field(default_factory=dict)


class ActivityLog:
    def __init__(self, keep: int = KEEP) -> None:
        self._entries: deque[Activity] = deque(maxlen=keep)
        self._listeners: set[asyncio.Queue[Activity]] = set()

    def record(self, type: str, action: str, id: str, project: str, /, **attributes: str) -> None:
        # Positional-only: Docker's attributes include a ``type`` (a network's driver).
        entry = Activity(time.time_ns(), type, action, id, project, dict(attributes))
        self._entries.append(entry)
        for queue in list(self._listeners):
            if queue.qsize() < QUEUE:
                queue.put_nowait(entry)
            else:
                self._listeners.discard(queue)

    def kept(self, since_ns: int = 0) -> list[Activity]:
        return [e for e in self._entries if e.time_ns >= since_ns]

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[Activity]]:
        """A queue of entries recorded from now on. Take it before reading ``kept`` to miss nothing."""
        queue: asyncio.Queue[Activity] = asyncio.Queue()
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)
