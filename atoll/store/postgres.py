"""What only PostgreSQL needs: advisory locks, so that several controllers can share one database.

SQLite is one controller's file, and it lets one writer at a time anyway; on PostgreSQL two controllers
write concurrently, and two invariants would break without a lock:

- **Placement claims.** ``services/placement.choose_host`` reads every host's claims and inserts the
  new instance in one transaction. Under READ COMMITTED, two controllers could both read the same
  free room and both take it. ``lock_placements`` takes a transaction-level advisory lock first: the
  second placement waits until the first commits, and (each statement reading a fresh snapshot under
  READ COMMITTED) then sees its claim. The lock goes with the commit or rollback.
- **Singleton loops.** ``services/lease.py`` holds a session-level advisory lock on a connection of
  its own; the server frees it the moment that session ends (process killed, connection cut).

Keys are fixed 64-bit numbers, the same in every controller of the cloud.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

PLACEMENT_LOCK = 0x61746F6C6C01
"""``pg_advisory_xact_lock`` key serialising placement transactions ("atoll" + 1)."""

LEADER_LOCK = 0x61746F6C6C02
"""``pg_try_advisory_lock`` key of the controller lease (``services/lease.py``)."""


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def lock_placements(s: Session) -> None:
    """Serialise this transaction's placement with every other controller's (no-op on SQLite)."""
    if is_postgres(s.connection()):
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PLACEMENT_LOCK})


def try_lock(conn: Connection, key: int) -> bool:
    """Take a session-level advisory lock if it is free; held until released or the session ends."""
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())


def holds_lock(conn: Connection, key: int) -> bool:
    """Whether this session still holds ``key``: a round trip that also proves the connection alive."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = :key"
    )
    return bool(conn.execute(query, {"key": key}).scalar())
