"""Consolidation: a plan that empties one host (for `atoll host evacuate` or to release a quiet host).

The plan is computed, not executed: the controller turns each move into a cold migration. Instances are
placed largest first (first-fit decreasing), which packs the rest of the fleet tighter and moves the hard
cases while the most room is left. The host being emptied is treated as draining, so nothing lands back on
it, and each move is added to the usage before the next one, so the plan never over-books a target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from atoll.scheduler.model import HostCapacity, HostUsage, NoHostFits, Overcommit, PlacementError, Request
from atoll.scheduler.place import place


@dataclass(frozen=True, slots=True)
class DrainPlan:
    moves: tuple[tuple[str, str], ...]
    """(instance id, target host id), in the order they should be migrated."""
    unmovable: Mapping[str, str]
    """instance id -> why no host takes it (the `NoHostFits` message)."""
    usage: Mapping[str, HostUsage]
    """Usage of the other hosts once every move is done."""

    @property
    def complete(self) -> bool:
        return not self.unmovable


def drain_plan(
    host_id: str,
    hosts: Sequence[HostCapacity],
    usage: Mapping[str, HostUsage],
    instances: Mapping[str, Request],
    overcommit: Overcommit | None = None,
) -> DrainPlan:
    """Move every instance in `instances` (id -> its request, all on `host_id`) to other hosts."""
    if not any(h.id == host_id for h in hosts):
        raise PlacementError(f"unknown host {host_id!r}")
    others = [dataclasses.replace(h, state="draining") if h.id == host_id else h for h in hosts]
    current = {k: v for k, v in usage.items() if k != host_id}
    order = sorted(instances.items(), key=lambda kv: (-kv[1].memory_bytes, -kv[1].cpu_millis, kv[0]))
    moves: list[tuple[str, str]] = []
    unmovable: dict[str, str] = {}
    for instance_id, request in order:
        try:
            chosen = place(request, others, current, overcommit)
        except NoHostFits as e:
            unmovable[instance_id] = str(e)
            continue
        current[chosen.host_id] = current.get(chosen.host_id, HostUsage(chosen.host_id)).plus(request)
        moves.append((instance_id, chosen.host_id))
    return DrainPlan(moves=tuple(moves), unmovable=unmovable, usage=current)
