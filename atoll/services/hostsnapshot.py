"""Every host's capacity and state, and which hosts hold which image, kept in memory for placement
(SQLite only, like ``claimsums.py``).

Placement used to read both tables of hosts and build a ``HostCapacity`` per host on every create, and
read every holder of the image: at a thousand hosts that was most of a create's time, for data that
changes when a host joins, leaves, changes state or capacity, or is drained, not when an instance is
made. So the list is built once and dropped when a committed transaction changed any of that:

- after each flush, a ``hosts`` or ``cluster_hosts`` row inserted or deleted, or updated in a column
  placement reads (state; drained, capacity, labels), marks the session; an ``image_hosts`` row
  inserted or deleted marks its image; a bulk ORM ``UPDATE``/``DELETE`` of those tables marks all;
- on commit the marked parts are dropped and rebuilt at the next placement; on rollback nothing that
  was cached changes (a rebuild inside a transaction that changed hosts is never kept).

Heartbeats that change nothing write ``heartbeat_at``/``last_seen`` only (``liveness.py``), which
placement does not read, so they keep the snapshot. Whether a host's agent is connected right now is
read live from the controller's registry at every placement, not cached.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, UOWTransaction, attributes
from sqlalchemy.orm.session import ORMExecuteState

from atoll.scheduler import HostCapacity
from atoll.services.claimsums import engine_of
from atoll.store.cluster import ClusterHostRow
from atoll.store.models import HostRow, ImageHostRow

UNBOUNDED = 1 << 62
_READ = {
    HostRow: ("state",),
    ClusterHostRow: ("drained", "cpu_millis", "memory_bytes", "disk_bytes", "pids", "labels"),
}
_HOSTS = "atoll.snapshot_hosts_changed"
_IMAGES = "atoll.snapshot_images_changed"
ALL = "*"


class HostSnapshot:
    def __init__(self) -> None:
        self._hosts: list[HostCapacity] | None = None
        self._holders: dict[str, frozenset[str]] = {}
        self.rebuilds = 0
        self.version = 0
        """+1 at every rebuild kept: what an index built from ``hosts`` checks it is still current."""

    def hosts(self, s: Session) -> list[HostCapacity]:
        """Every host with its capacity and its state as the database says (``ready``, ``draining``,
        or ``down`` for any other state); connection is the caller's to check."""
        if self._hosts is not None and not s.info.get(_HOSTS):
            return self._hosts
        built = read_hosts(s)
        if not s.info.get(_HOSTS):  # not our own uncommitted changes: safe to keep
            self._hosts = built
            self.rebuilds += 1
            self.version += 1
        return built

    def current(self, s: Session) -> bool:
        """Whether ``hosts`` would answer the list last kept (no rebuild pending)."""
        return self._hosts is not None and not s.info.get(_HOSTS)

    def holders(self, s: Session, image_id: str) -> frozenset[str]:
        changed = s.info.get(_IMAGES) or set()
        cached = self._holders.get(image_id)
        if cached is not None and image_id not in changed and ALL not in changed:
            return cached
        found = frozenset(s.scalars(select(ImageHostRow.host_id).where(ImageHostRow.image_id == image_id)))
        if image_id not in changed and ALL not in changed:
            self._holders[image_id] = found
        return found

    def changed(self, hosts: bool, images: set[str]) -> None:
        if hosts:
            self._hosts = None
        if ALL in images:
            self._holders.clear()
        for image_id in images:
            self._holders.pop(image_id, None)


def read_hosts(s: Session) -> list[HostCapacity]:
    # Plain column tuples, not ORM objects.
    members = {
        row[0]: row
        for row in s.execute(
            select(
                ClusterHostRow.host_id,
                ClusterHostRow.drained,
                ClusterHostRow.cpu_millis,
                ClusterHostRow.memory_bytes,
                ClusterHostRow.disk_bytes,
                ClusterHostRow.pids,
                ClusterHostRow.labels,
            )
        )
    }
    hosts = []
    for host_id, host_state in s.execute(select(HostRow.id, HostRow.state)):
        member = members.get(host_id)
        state = "ready"
        if host_state != "ready":
            state = "down"
        elif member is not None and member[1]:
            state = "draining"
        if member is None:  # the local host of `atoll up`: unbounded
            hosts.append(HostCapacity(host_id, UNBOUNDED, UNBOUNDED, UNBOUNDED, UNBOUNDED, state=state))  # type: ignore[arg-type]
        else:
            _, _, cpu, memory, disk, pids, labels = member
            hosts.append(
                HostCapacity(host_id, cpu, memory, disk, pids, labels=dict(labels), state=state)  # type: ignore[arg-type]
            )
    return hosts


_by_engine: weakref.WeakKeyDictionary[Engine, HostSnapshot] = weakref.WeakKeyDictionary()


def for_session(s: Session) -> HostSnapshot | None:
    """The snapshot of this session's database, or None where another process may write it."""
    engine = engine_of(s)
    if engine is None or engine.dialect.name != "sqlite":
        return None
    snap = _by_engine.get(engine)
    if snap is None:
        snap = _by_engine[engine] = HostSnapshot()
    return snap


def _touched(row: Any) -> bool:
    state = attributes.instance_state(row)
    return any(state.attrs[name].history.has_changes() for name in _READ[type(row)])


@event.listens_for(Session, "after_flush")
def _note(s: Session, _flush: UOWTransaction) -> None:
    images: set[str] = s.info.setdefault(_IMAGES, set())
    for row in (*s.new, *s.deleted):
        if isinstance(row, (HostRow, ClusterHostRow)):
            s.info[_HOSTS] = True
        elif isinstance(row, ImageHostRow):
            images.add(row.image_id)
    for row in s.dirty:
        if isinstance(row, (HostRow, ClusterHostRow)) and _touched(row):
            s.info[_HOSTS] = True
        elif isinstance(row, ImageHostRow):
            images.add(ALL)  # a key changed in place: rare, take no chances


@event.listens_for(Session, "do_orm_execute")
def _bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    classes = {m.class_ for m in state.all_mappers}
    if classes & {HostRow, ClusterHostRow}:
        state.session.info[_HOSTS] = True
    if ImageHostRow in classes:
        state.session.info.setdefault(_IMAGES, set()).add(ALL)


def _settle(s: Session) -> None:
    hosts = bool(s.info.pop(_HOSTS, False))
    images: set[str] = s.info.pop(_IMAGES, None) or set()
    if not hosts and not images:
        return
    engine = engine_of(s)
    snap = _by_engine.get(engine) if engine is not None else None
    if snap is not None:
        snap.changed(hosts, images)


@event.listens_for(Session, "after_commit")
def _commit(s: Session) -> None:
    _settle(s)


@event.listens_for(Session, "after_soft_rollback")
def _rollback(s: Session, previous: Any) -> None:
    # Nothing uncommitted was kept; dropping what the transaction touched is merely cautious. After a
    # savepoint the marks stay: the outer transaction may still hold changes flushed before it.
    if getattr(previous, "nested", False):
        engine = engine_of(s)
        snap = _by_engine.get(engine) if engine is not None else None
        if snap is not None:
            snap.changed(bool(s.info.get(_HOSTS)), set(s.info.get(_IMAGES) or ()))
        return
    _settle(s)
