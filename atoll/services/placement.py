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

from sqlalchemy import select
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
from atoll.services.context import Controller
from atoll.store.cluster import ClusterHostRow
from atoll.store.models import HostRow, ImageHostRow, InstanceRow
from atoll.store.postgres import lock_placements

UNBOUNDED = 1 << 62
STRATEGY_LABEL = "atoll.placement.strategy"
"""``binpack`` (default: fill hosts, so empty ones can be released) or ``spread``."""


def _request_vector(resources: dict[str, object]) -> tuple[int, int, int, int]:
    quota, period = resources.get("cpu_quota_us"), resources.get("cpu_period_us")
    cpu = (
        int(quota) * 1000 // int(period)
        if isinstance(quota, int) and isinstance(period, int) and period
        else 0
    )
    memory = resources.get("memory_bytes")
    pids = resources.get("pids_limit")
    return (
        cpu,
        memory if isinstance(memory, int) and memory > 0 else 0,
        0,
        pids if isinstance(pids, int) and pids > 0 else 0,
    )


def allocations(s: Session) -> dict[str, HostUsage]:
    """Claims per host: the requests of every instance placed there, plus their names and labels."""
    sums: dict[str, list[int]] = {}
    placed: dict[str, list[PlacedInstance]] = {}
    for host_id, name, spec in s.execute(select(InstanceRow.host_id, InstanceRow.name, InstanceRow.spec)):
        vector = _request_vector(spec.get("resources") or {})
        total = sums.setdefault(host_id, [0, 0, 0, 0])
        for i, amount in enumerate(vector):
            total[i] += amount
        placed.setdefault(host_id, []).append(PlacedInstance(name, dict(spec.get("labels") or {})))
    return {
        host_id: HostUsage(
            host_id,
            cpu_millis=t[0],
            memory_bytes=t[1],
            disk_bytes=t[2],
            pids=t[3],
            instances=tuple(placed[host_id]),
        )
        for host_id, t in sums.items()
    }


def _capacities(ctl: Controller, s: Session) -> list[HostCapacity]:
    members = {r.host_id: r for r in s.scalars(select(ClusterHostRow))}
    hosts = []
    for host in s.scalars(select(HostRow)):
        member = members.get(host.id)
        state = "ready"
        if host.state != "ready" or host.id not in ctl.agents:
            state = "down"
        elif member is not None and member.drained:
            state = "draining"
        if member is None:
            hosts.append(HostCapacity(host.id, UNBOUNDED, UNBOUNDED, UNBOUNDED, UNBOUNDED, state=state))  # type: ignore[arg-type]
        else:
            hosts.append(
                HostCapacity(
                    host.id,
                    member.cpu_millis,
                    member.memory_bytes,
                    member.disk_bytes,
                    member.pids,
                    labels=dict(member.labels),
                    state=state,  # type: ignore[arg-type]
                )
            )
    return hosts


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
    holders = set(s.scalars(select(ImageHostRow.host_id).where(ImageHostRow.image_id == spec.image_id)))
    overcommit = ctl.cluster.overcommit if ctl.cluster is not None else Overcommit()
    usage = allocations(s)
    holding = [h for h in hosts if h.id in holders]
    if holding and len(holding) < len(hosts) and ctl.cluster is not None:
        # Hosts that already hold the image first: no copy, and images that cannot be exported (those
        # imported from archives) still work there. Only when none of them fits does placement spill
        # over to every host, and the image is copied to the one chosen.
        with contextlib.suppress(NoHostFits):
            return place(request, holding, usage, overcommit).host_id
    try:
        return place(request, hosts, usage, overcommit).host_id
    except NoHostFits as e:
        raise Conflict(str(e)) from e
