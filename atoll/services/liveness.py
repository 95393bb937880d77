"""Cheap heartbeats and membership checks: what a controller keeps in memory about its hosts.

At a thousand hosts the controller spent half its time on two things that almost never change: checking,
on every RPC, that the caller is still a member (one query each), and writing every heartbeat (two rows,
a commit). This module keeps both in memory, per controller process, with the database still the truth:

- **Members** (``MemberCache``): host ids known to have a ``cluster_hosts`` row. A hit skips the query;
  a miss asks the database and remembers a positive answer. Entries only ever leave: ``host rm`` on this
  controller drops the host at once (under the same event loop, so no RPC slips in between), and every
  controller's ``follow_hosts`` loop drops the hosts that are gone from the database, so a host removed
  through another controller is refused within one follow interval.
- **Heartbeats** (``Liveness``): the last report each host sent, if it left the host ``ready``. A beat with
  the same report from a host that is still connected is only a time in memory (``pending``); those times
  are written in one batch (an ``executemany`` of ``UPDATE``) at most every ``flush_interval`` seconds, by
  the controller's flush loop or by the beat that finds a flush due. Anything else (a new report, a host
  not ``ready`` or not connected here, the first beat after a start) takes the full path, which writes
  the rows and runs the state changes, and sets the remembered report again.

Host-down detection still reads ``heartbeat_at`` from the database, so it works across restarts and with
several controllers: ``mark_silent_hosts_down`` first flushes this process's pending beats, and the other
controllers' are at most one flush interval old, far below any heartbeat timeout (the interval is capped
at a tenth of it). A controller that stops flushes on the way out; one that is killed loses at most one
interval of beats, which only makes its hosts look that much older. A batch also reads back which of its
hosts the database no longer has ``ready`` (another controller marked them ``down``): those lose their
remembered report, so their next beat takes the full path and brings them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from atoll.model.clock import from_timestamp
from atoll.model.cluster import HostReport
from atoll.store.cluster import ClusterHostRow
from atoll.store.models import HostRow

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
"""Seconds between batched heartbeat writes (less if the heartbeat timeout is short)."""


class MemberCache:
    """Host ids that are members of the cluster, as last read from the database."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self.hits = 0
        self.misses = 0

    def is_member(self, sessions: sessionmaker[Session], host_id: str) -> bool:
        if host_id in self._known:
            self.hits += 1
            return True
        self.misses += 1
        with sessions() as s:
            found = s.get(ClusterHostRow, host_id) is not None
        if found:
            self._known.add(host_id)
        return found

    def drop(self, host_id: str) -> None:
        self._known.discard(host_id)

    def keep_only(self, members: set[str]) -> None:
        """Forget every host the database no longer has (read in ``follow_hosts``)."""
        self._known &= members


class Liveness:
    """Heartbeats that changed nothing, kept in memory until the next batched write."""

    def __init__(self, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.flush_interval = flush_interval
        self._last: dict[str, HostReport] = {}
        self._pending: dict[str, float] = {}
        self._flushed_at = time.monotonic()
        self.cheap = 0
        self.full = 0
        self.batches = 0

    def unchanged(self, host_id: str, report: HostReport) -> bool:
        return self._last.get(host_id) == report

    def remember(self, host_id: str, report: HostReport) -> None:
        """The full path wrote this report and left the host ``ready``."""
        self._last[host_id] = report
        self._pending.pop(host_id, None)  # the full path wrote a newer time than any pending one
        self.full += 1

    def forget(self, host_id: str) -> None:
        """The host's next beat must take the full path (it is not ``ready``, gone, or changed)."""
        self._last.pop(host_id, None)

    def beat(self, host_id: str, at: float) -> None:
        self._pending[host_id] = at
        self.cheap += 1

    def last_beat(self, host_id: str) -> float | None:
        """A beat not written yet, if any (for displays that want the freshest age)."""
        return self._pending.get(host_id)

    def due(self) -> bool:
        return bool(self._pending) and time.monotonic() - self._flushed_at >= self.flush_interval

    def flush(self, sessions: sessionmaker[Session]) -> int:
        """Write the pending beats in one transaction; returns how many."""
        self._flushed_at = time.monotonic()
        beats, self._pending = self._pending, {}
        if not beats:
            return 0
        try:
            with sessions.begin() as s:
                conn = s.connection()
                conn.execute(
                    update(ClusterHostRow)
                    .where(ClusterHostRow.host_id == bindparam("b_id"))
                    .values(heartbeat_at=bindparam("b_at")),
                    [{"b_id": h, "b_at": at} for h, at in beats.items()],
                )
                conn.execute(
                    update(HostRow)
                    .where(HostRow.id == bindparam("b_id"))
                    .values(last_seen=bindparam("b_seen")),
                    [{"b_id": h, "b_seen": from_timestamp(at)} for h, at in beats.items()],
                )
                not_ready = set(
                    s.scalars(select(HostRow.id).where(HostRow.id.in_(list(beats)), HostRow.state != "ready"))
                )
        except Exception:
            # Not lost: they go back, unless a newer beat (or the full path) came meanwhile.
            for host_id, at in beats.items():
                self._pending.setdefault(host_id, at)
            raise
        for host_id in not_ready:
            self.forget(host_id)
        self.batches += 1
        return len(beats)

    def flush_if_due(self, sessions: sessionmaker[Session]) -> None:
        if self.due():
            self.flush(sessions)


async def flush_forever(
    liveness: Liveness, sessions: sessionmaker[Session], members: MemberCache | None = None
) -> None:
    """The controller's loop: pending beats reach the database even when no new beat arrives. Logs the
    counters once a minute (how many beats were cheap, how often the membership cache answered)."""
    reported = time.monotonic()
    try:
        while True:
            await asyncio.sleep(liveness.flush_interval)
            try:
                liveness.flush_if_due(sessions)
            except Exception:
                log.exception("writing heartbeats failed; retried at the next flush")
            if time.monotonic() - reported >= 60:
                reported = time.monotonic()
                log.info(
                    "heartbeats: %d unchanged (kept in memory, %d batches), %d written in full;"
                    " membership: %d from memory, %d asked",
                    liveness.cheap,
                    liveness.batches,
                    liveness.full,
                    members.hits if members else 0,
                    members.misses if members else 0,
                )
    finally:
        with contextlib.suppress(Exception):
            liveness.flush(sessions)
