"""The claims per host, summed in memory and kept in step with this process's commits (SQLite only).

Placement needs, on every create, the summed claims of every host. As one ``GROUP BY host_id`` over
``instances`` that is O(instances) per create: at 50,000 instances SQLite reads every row of the table
(tens of milliseconds), so creating N instances stays quadratic. On SQLite one controller process is the
only writer, so the sums can live in its memory:

- built once from that ``GROUP BY`` (``sums``), the first time placement asks for them;
- kept in step by session events: after each flush, the claim of every instance inserted, deleted, or
  whose host or claim columns changed is noted as a delta on that session (the ``claim_*`` columns are
  derived in the flush itself, ``store/claims.py``); the deltas are applied when the transaction commits
  and dropped when it rolls back, so a create that fails leaves no trace;
- dropped altogether (rebuilt from SQL at the next placement) when a change cannot be followed: a bulk
  ``UPDATE``/``DELETE`` through the ORM, an instance whose old values were not loaded, or a rollback of
  a transaction that had flushed claims (savepoints make partial rollbacks hard to follow exactly).

With several controllers on PostgreSQL another process commits too, so there placement keeps summing in
SQL under its advisory lock (``placement.allocations``); this cache is not used there.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, UOWTransaction, attributes
from sqlalchemy.orm.session import ORMExecuteState

from atoll.store.models import InstanceRow

Claim = tuple[int, int, int]
"""cpu millis, memory bytes, pids."""

_FIELDS = ("claim_cpu_millis", "claim_memory_bytes", "claim_pids")
_DELTAS = "atoll.claim_deltas"
_LOST = "atoll.claims_lost"


class ClaimSums:
    def __init__(self) -> None:
        self._sums: dict[str, Claim] | None = None
        self.rebuilds = 0
        self.on_change: Callable[[str, Claim], None] | None = None
        """Told each host whose committed sums changed (``placeindex.py`` keeps its index with them)."""
        self.on_drop: Callable[[], None] | None = None

    def sums(self, s: Session) -> dict[str, Claim]:
        """Committed sums plus what this session flushed and has not committed yet."""
        pending: list[tuple[str, int, Claim]] = s.info.get(_DELTAS) or []
        if self._sums is None or s.info.get(_LOST):
            rows = sum_rows(s)
            fresh = {h: (int(c or 0), int(m or 0), int(p or 0)) for h, c, m, p in rows}
            if pending or s.info.get(_LOST):
                return fresh  # it already counts this session's own flushed rows: not the committed sums
            self._sums = fresh
            self.rebuilds += 1
        if not pending:
            return self._sums
        out = dict(self._sums)
        _add(out, pending)
        return out

    def apply(self, deltas: list[tuple[str, int, Claim]]) -> None:
        if self._sums is None:
            return
        _add(self._sums, deltas)
        if self.on_change is not None:
            for host_id in {d[0] for d in deltas}:
                self.on_change(host_id, self._sums[host_id])

    def drop(self) -> None:
        self._sums = None
        if self.on_drop is not None:
            self.on_drop()

    def pending(self, s: Session) -> bool:
        """Whether this session flushed claims it has not committed (then only SQL sums are exact)."""
        return bool(s.info.get(_DELTAS)) or bool(s.info.get(_LOST))


def _add(sums: dict[str, Claim], deltas: list[tuple[str, int, Claim]]) -> None:
    for host_id, sign, (cpu, memory, pids) in deltas:
        c, m, p = sums.get(host_id, (0, 0, 0))
        sums[host_id] = (c + sign * cpu, m + sign * memory, p + sign * pids)


_by_engine: weakref.WeakKeyDictionary[Engine, ClaimSums] = weakref.WeakKeyDictionary()


def for_session(s: Session) -> ClaimSums | None:
    """The cache of this session's database, or None where another process may write it (PostgreSQL)."""
    bind = s.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name != "sqlite":
        return None
    cache = _by_engine.get(engine)
    if cache is None:
        cache = _by_engine[engine] = ClaimSums()
    return cache


def sum_rows(s: Session) -> Iterable[tuple[str, int | None, int | None, int | None]]:
    """Claims per host as the database sums them: (host id, cpu millis, memory bytes, pids)."""
    return s.execute(  # type: ignore[return-value]
        select(
            InstanceRow.host_id,
            func.sum(InstanceRow.claim_cpu_millis),
            func.sum(InstanceRow.claim_memory_bytes),
            func.sum(InstanceRow.claim_pids),
        ).group_by(InstanceRow.host_id)
    )


def engine_of(s: Session) -> Engine | None:
    try:
        bind = s.get_bind()
    except Exception:
        return None
    return bind if isinstance(bind, Engine) else bind.engine


def _values(row: InstanceRow, *, before: bool) -> tuple[str, Claim] | None:
    """The row's host and claim as committed before this flush (``before``) or after it; None if an
    old value was never loaded (then the change cannot be followed)."""
    state = attributes.instance_state(row)
    out: list[Any] = []
    for name in ("host_id", *_FIELDS):
        history = state.attrs[name].history
        if not before:
            out.append(getattr(row, name))
        elif history.deleted:
            out.append(history.deleted[0])
        elif history.unchanged:
            out.append(history.unchanged[0])
        elif history.added:  # set without the old value loaded
            return None
        else:
            return None
    host_id, cpu, memory, pids = out
    return host_id, (int(cpu or 0), int(memory or 0), int(pids or 0))


@event.listens_for(Session, "after_flush")
def _note(s: Session, _flush: UOWTransaction) -> None:
    deltas: list[tuple[str, int, Claim]] = s.info.setdefault(_DELTAS, [])
    for row in s.new:
        if isinstance(row, InstanceRow):
            after = _values(row, before=False)
            if after is not None:
                deltas.append((after[0], 1, after[1]))
    for row in s.deleted:
        if isinstance(row, InstanceRow):
            old = _values(row, before=True)
            if old is None:
                s.info[_LOST] = True
            else:
                deltas.append((old[0], -1, old[1]))
    for row in s.dirty:
        if not isinstance(row, InstanceRow):
            continue
        state = attributes.instance_state(row)
        if not any(state.attrs[n].history.has_changes() for n in ("host_id", *_FIELDS)):
            continue
        old, new = _values(row, before=True), _values(row, before=False)
        if old is None or new is None:
            s.info[_LOST] = True
            continue
        deltas.append((old[0], -1, old[1]))
        deltas.append((new[0], 1, new[1]))


@event.listens_for(Session, "do_orm_execute")
def _bulk(state: ORMExecuteState) -> None:
    """A bulk UPDATE or DELETE of instances changes rows the session never sees: rebuild after it."""
    if (state.is_update or state.is_delete) and any(m.class_ is InstanceRow for m in state.all_mappers):
        state.session.info[_LOST] = True


@event.listens_for(Session, "after_commit")
def _commit(s: Session) -> None:
    deltas = s.info.pop(_DELTAS, None)
    lost = s.info.pop(_LOST, False)
    engine = engine_of(s)
    cache = _by_engine.get(engine) if engine is not None else None
    if cache is None:
        return
    if lost:
        cache.drop()
    elif deltas:
        cache.apply(deltas)


@event.listens_for(Session, "after_soft_rollback")
def _rollback(s: Session, previous: Any) -> None:
    """Any rollback (of a savepoint too) after claims were flushed: rebuild rather than guess."""
    deltas = s.info.pop(_DELTAS, None)
    if not deltas and not s.info.get(_LOST):
        return
    engine = engine_of(s)
    cache = _by_engine.get(engine) if engine is not None else None
    if cache is not None:
        cache.drop()
    if getattr(previous, "nested", False):
        # The outer transaction goes on with rows flushed before the savepoint: sum in SQL until it ends.
        s.info[_LOST] = True
    else:
        s.info.pop(_LOST, None)
