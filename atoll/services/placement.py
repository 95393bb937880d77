"""Placement: the bridge between the store and the pure scheduler (``atoll.scheduler``).

``choose_host`` runs inside the transaction that inserts the instance row, and reads the claims (the
summed requests of every instance already placed on each host) in that same transaction, with no await
in between: within one controller process, two creates can never both see a host as free. On
PostgreSQL, where several controllers may write, the transaction first takes an advisory lock
(``store/postgres.lock_placements``), so placements of all controllers are serialised. An instance's
claim lasts as long as the instance, stopped or not, so that starting it again never over-books.

A host without a ``cluster_hosts`` row (the local host of ``atoll up``) reports no capacity: it is
treated as unbounded, so single-node placement is unchanged. Hosts whose agent is not connected right
now count as ``down``. In a cluster, hosts that already hold the image are tried first; if none fits,
every host is a candidate and ``imagecopy`` copies the image to the chosen one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.instance import InstanceSpec
from atoll.scheduler import (
    HostCapacity,
    HostUsage,
    InvalidRule,
    NoHostFits,
    Overcommit,
    PlacedInstance,
    Request,
    parse_rules,
    place,
)
from atoll.services import claimsums, hostsnapshot, placeindex
from atoll.services.context import Controller
from atoll.store.models import ImageHostRow, InstanceRow
from atoll.store.postgres import lock_placements

UNBOUNDED = hostsnapshot.UNBOUNDED
STRATEGY_LABEL = "atoll.placement.strategy"
"""``binpack`` (default: fill hosts, so empty ones can be released) or ``spread``."""


def allocations(s: Session, *, instances: bool = True) -> dict[str, HostUsage]:
    """Claims per host: the summed requests of every instance placed there (on SQLite kept in memory,
    ``claimsums.py``; elsewhere one ``GROUP BY`` over the ``claim_*`` columns, ``store/claims.py``),
    plus, if ``instances``, their names and labels for affinity rules (that part reads each instance's
    labels: ask for it only when rules need it)."""
    placed: dict[str, list[PlacedInstance]] = {}
    if instances:
        rows = s.execute(select(InstanceRow.host_id, InstanceRow.name, InstanceRow.spec["labels"]))
        for host_id, name, labels in rows:
            placed.setdefault(host_id, []).append(PlacedInstance(name, dict(labels or {})))
    cache = claimsums.for_session(s)
    if cache is not None:  # SQLite: this process is the only writer, the sums live in its memory
        sums: Iterable[tuple[str, int, int, int]] = ((h, *claim) for h, claim in cache.sums(s).items())
    else:
        sums = claimsums.sum_rows(s)  # type: ignore[assignment]
    return {
        host_id: HostUsage(
            host_id,
            cpu_millis=int(cpu or 0),
            memory_bytes=int(memory or 0),
            pids=int(pids or 0),
            instances=tuple(placed.get(host_id, ())),
        )
        for host_id, cpu, memory, pids in sums
    }


def instance_counts(s: Session) -> dict[str, int]:
    rows = s.execute(select(InstanceRow.host_id, func.count()).group_by(InstanceRow.host_id))
    return {host_id: int(n) for host_id, n in rows}


def _capacities(ctl: Controller, s: Session) -> list[HostCapacity]:
    snapshot = hostsnapshot.for_session(s)
    hosts = snapshot.hosts(s) if snapshot is not None else hostsnapshot.read_hosts(s)
    # Connection is live state, not stored: a host whose agent is not connected right now is down.
    gone = [i for i, h in enumerate(hosts) if h.state == "ready" and h.id not in ctl.agents]
    if not gone:
        return hosts
    hosts = list(hosts)
    for i in gone:
        hosts[i] = dataclasses.replace(hosts[i], state="down")
    return hosts


def _holders(s: Session, image_id: str) -> frozenset[str]:
    snapshot = hostsnapshot.for_session(s)
    if snapshot is not None:
        return snapshot.holders(s, image_id)
    return frozenset(s.scalars(select(ImageHostRow.host_id).where(ImageHostRow.image_id == image_id)))


def request_for(spec: InstanceSpec) -> Request:
    """The scheduler's view of an instance; rules come from its env and labels (Swarm syntax)."""
    try:
        constraints, affinities = parse_rules(spec.process.env, spec.labels)
    except InvalidRule as e:
        raise InvalidInput(f"env: {e}") from e
    strategy = spec.labels.get(STRATEGY_LABEL, "binpack")
    if strategy not in ("binpack", "spread"):
        raise InvalidInput(f"labels: {STRATEGY_LABEL} must be binpack or spread, not {strategy!r}")
    r = spec.resources
    cpu = (r.cpu_quota_us * 1000 // r.cpu_period_us) if r.cpu_quota_us and r.cpu_period_us else 0
    return Request(
        cpu_millis=cpu,
        memory_bytes=r.memory_bytes if r.memory_bytes and r.memory_bytes > 0 else 0,
        pids=r.pids_limit if r.pids_limit and r.pids_limit > 0 else 0,
        kind=str(spec.kind),
        project=spec.project,
        name=spec.name,
        labels=dict(spec.labels),
        constraints=constraints,
        affinities=affinities,
        strategy=strategy,  # type: ignore[arg-type]
        image=spec.image_id,
    )


def choose_host(ctl: Controller, s: Session, spec: InstanceSpec) -> str:
    """Pick the host for a new instance, or raise Conflict with the scheduler's explanation."""
    request = request_for(spec)
    if not ctl.agents.all():
        raise NotFound("no hosts: no agent is connected to this controller")
    lock_placements(s)  # other controllers on the same PostgreSQL database wait here until we commit
    hosts = _capacities(ctl, s)
    holders = _holders(s, spec.image_id)
    overcommit = ctl.cluster.overcommit if ctl.cluster is not None else Overcommit()
    holding = [h for h in hosts if h.id in holders]
    holders_first = bool(holding) and len(holding) < len(hosts) and ctl.cluster is not None
    snapshot, live = hostsnapshot.for_session(s), placeindex.for_session(s)
    if not holders_first and snapshot is not None and live is not None:
        # The index kept between creates (SQLite; placeindex.py), when it can answer exactly.
        try:
            chosen = live.place(s, snapshot, hosts, request, overcommit)
        except NoHostFits as e:
            raise Conflict(str(e)) from e
        if chosen is not None:
            return chosen.host_id
    usage = allocations(s, instances=bool(request.affinities))
    if holders_first:
        # Hosts that already hold the image first: no copy, and images that cannot be exported (those
        # imported from archives) still work there. Only when none of them fits does placement spill
        # over to every host, and the image is copied to the one chosen.
        with contextlib.suppress(NoHostFits):
            return place(request, holding, usage, overcommit).host_id
    try:
        return place(request, hosts, usage, overcommit).host_id
    except NoHostFits as e:
        raise Conflict(str(e)) from e
