"""The controller lease: of all controllers sharing one database, exactly one runs the singleton loops.

Every controller serves the API; only the lease holder runs the loops that must not run twice at once
(marking silent hosts down, the image GC). On PostgreSQL the lease is a session-level advisory lock
(``store/postgres.LEADER_LOCK``) taken with ``pg_try_advisory_lock`` on a connection kept for that
purpose alone:

- a controller without the lease retries every ``interval`` seconds;
- the holder checks every ``interval`` seconds that its session still holds the lock (a round trip,
  so a cut connection is noticed); if not, it cancels its loops and competes again;
- when the holder dies (``kill -9``, crash, host gone) its session ends and PostgreSQL frees the lock:
  the next try of another controller wins. Take-over therefore takes at most ``interval`` after the
  server notices, which is at once for a killed process (its socket closes) and within the TCP
  keepalive time (``KEEPALIVE``) for a machine that vanished.

The loops are written to be idempotent, so the short overlap possible when a holder loses its
connection but has not noticed yet (up to ``interval``) does no harm.

On SQLite there is one controller by construction (the database is a local file): the lease is always
held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from atoll.store.postgres import LEADER_LOCK, holds_lock, try_lock

log = logging.getLogger(__name__)

KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""libpq TCP keepalives on the lease connection: a vanished peer is noticed in about 11 s."""

Loops = Callable[[], list[Coroutine[Any, Any, None]]]


class Lease:
    def __init__(self, database_url: str, *, interval: float = 2.0, key: int = LEADER_LOCK) -> None:
        self.interval = interval
        self.key = key
        self.held = False
        self.acquired_at: float | None = None
        """``time.monotonic()`` when this controller last took the lease."""
        self._engine: Engine | None = None
        if make_url(database_url).get_backend_name() == "postgresql":
            self._engine = create_engine(database_url, poolclass=NullPool, connect_args=KEEPALIVE)
        self._conn: Connection | None = None

    @property
    def shared(self) -> bool:
        """Whether other controllers can share the database (so the lease is real)."""
        return self._engine is not None

    def _try(self) -> bool:
        assert self._engine is not None
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return try_lock(self._conn, self.key)

    def _still_held(self) -> bool:
        return self._conn is not None and holds_lock(self._conn, self.key)

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # ends the session: the lock, if still ours, is freed
            self._conn = None

    async def _acquire(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(self._try):
                    return
            except Exception as e:
                log.warning("lease: cannot reach the database (%s); retrying", e)
                await asyncio.to_thread(self._drop)
            await asyncio.sleep(self.interval)

    async def _watch(self) -> None:
        """Returns when the lease is lost."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                if not await asyncio.to_thread(self._still_held):
                    log.warning("lease: lost (the lock is no longer ours)")
                    return
            except Exception as e:
                log.warning("lease: lost (%s)", e)
                return

    async def run(self, loops: Loops) -> None:
        """Forever: win the lease, run ``loops()`` while it is held, stop them when it is lost."""
        if self._engine is None:
            self.held, self.acquired_at = True, time.monotonic()
            await asyncio.gather(*loops())
            return
        try:
            while True:
                await self._acquire()
                self.held, self.acquired_at = True, time.monotonic()
                log.info("lease: this controller runs the background loops")
                tasks = [asyncio.create_task(loop) for loop in loops()]
                try:
                    await self._watch()
                finally:
                    self.held = False
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    await asyncio.to_thread(self._drop)
                # Stand back for two intervals before competing again: a controller that was waiting
                # (it retries every interval) takes over, rather than the one whose session was cut
                # winning the lock straight back.
                await asyncio.sleep(2 * self.interval)
        finally:
            self.held = False
            await asyncio.to_thread(self._drop)
            if self._engine is not None:
                self._engine.dispose()
