"""A scheduler index (``atoll/scheduler/index.py``) kept alive between creates (SQLite only).

With the hosts (``hostsnapshot.py``) and the claims (``claimsums.py``) in memory, what remained of a
create's placement was the linear ``place`` over every host (a few ms at a thousand hosts). The
``FleetIndex`` finds a valid host by walking a few, but building one costs more than one linear scan,
so it pays only if it outlives the create. This module keeps one per database:

- built from the snapshot's hosts (with the hosts whose agent is not connected marked ``down``) and the
  committed claim sums, and remembered with what it was built from: the snapshot's version and the set
  of disconnected hosts. A placement whose view differs rebuilds it;
- kept exact: every committed change of a host's claims (a create, remove, update, move) reaches it
  through ``ClaimSums.on_change`` and moves that host in the index's lists; a dropped ``ClaimSums``
  drops it. The index itself never claims: the create's commit does, through the same path;
- asked only what it can answer exactly as the linear path would see it: requests without affinity
  rules (those read names and labels of what runs where), placed among all hosts (not the
  image-holders-first pass), from a session with no uncommitted claims of its own. Anything else, and
  PostgreSQL (other controllers commit claims too), takes the linear ``place``.

What ``FleetIndex`` guarantees holds here: every candidate passes every filter against the committed
claims, so the host is valid and never over-committed; a request that fits nowhere gets the linear
scan's ``NoHostFits`` with its per-filter counts. The choice is the best of a sample, not of all hosts.
"""

from __future__ import annotations

import weakref

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from atoll.scheduler import HostCapacity, HostUsage, Overcommit, Placement, Request
from atoll.scheduler.index import FleetIndex
from atoll.services import claimsums, hostsnapshot


class LiveIndex:
    def __init__(self, claims: claimsums.ClaimSums) -> None:
        self._claims = claims
        self._index: FleetIndex | None = None
        self._built_from: tuple[int, frozenset[str], Overcommit] | None = None
        self.builds = 0
        self.placed = 0
        claims.on_change = self._claims_changed
        claims.on_drop = self.drop

    def drop(self) -> None:
        self._index, self._built_from = None, None

    def _claims_changed(self, host_id: str, claim: claimsums.Claim) -> None:
        if self._index is not None:
            cpu, memory, pids = claim
            self._index.set_usage(host_id, HostUsage(host_id, cpu_millis=cpu, memory_bytes=memory, pids=pids))

    def place(
        self,
        s: Session,
        snapshot: hostsnapshot.HostSnapshot,
        hosts: list[HostCapacity],
        request: Request,
        overcommit: Overcommit,
    ) -> Placement | None:
        """The index's placement, or None if it cannot answer exactly here (take the linear path)."""
        if request.affinities or self._claims.pending(s) or not snapshot.current(s):
            return None
        gone = frozenset(h.id for h in hosts if h.state == "down")
        built_from = (snapshot.version, gone, overcommit)
        if self._index is None or self._built_from != built_from:
            usage = {
                h: HostUsage(h, cpu_millis=c, memory_bytes=m, pids=p)
                for h, (c, m, p) in self._claims.sums(s).items()
            }
            self._index = FleetIndex(hosts, usage, overcommit)
            self._built_from = built_from
            self.builds += 1
        self.placed += 1
        return self._index.place(request)


_by_engine: weakref.WeakKeyDictionary[Engine, LiveIndex] = weakref.WeakKeyDictionary()


def for_session(s: Session) -> LiveIndex | None:
    claims = claimsums.for_session(s)
    if claims is None:
        return None
    bind = s.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    live = _by_engine.get(engine)
    if live is None:
        live = _by_engine[engine] = LiveIndex(claims)
    return live
