"""What every move of an instance to another host does to the controller's records (evacuation and
failover share it): the row's host and placement generation change in one transaction, guarded by the
generation read before the move began, so two moves of one instance can never both commit; its
published ports follow it (same host ports, refused if the target already publishes one of them);
afterwards every host hears of the new location (overlay forwarding, security groups, names).

Each move also leaves a note on the instance (``move_note``, shown by the API): where it came from and
what stayed behind there. Volumes and bind mounts keep their data on the old host (there is no shared
storage yet), so the user learns from the instance itself that it started without that data, or, for
a failover that did not move it, why it still sits on its down host.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict
from atoll.model.instance import InstanceSpec
from atoll.model.volume import MountType
from atoll.scheduler import DrainPlan, Overcommit, drain_plan
from atoll.services import dnsrecords, overlay
from atoll.services.context import Controller
from atoll.services.placement import _capacities, allocations, request_for
from atoll.services.secgroup_notify import security_changed
from atoll.services.views import instance_spec
from atoll.store.models import HostRow, InstanceRow
from atoll.store.secgroups import PublishedPortRow


@dataclasses.dataclass(frozen=True)
class Placed:
    """An instance as read before a move: enough to move it and to detect a concurrent move."""

    spec: InstanceSpec
    host_id: str
    generation: int
    was_running: bool


def read(s: Session, instance_id: str) -> Placed:
    row = s.get(InstanceRow, instance_id)
    if row is None:
        raise Conflict(f"instance {instance_id[:12]} was removed during the move")
    return Placed(instance_spec(row), row.host_id, row.generation, row.desired_state == "running")


def host_name(s: Session, host_id: str) -> str:
    host = s.get(HostRow, host_id)
    return host.name if host is not None else host_id


def local_data(spec: InstanceSpec) -> list[str]:
    """What stays behind on the old host: volumes (their data is local) and bind mounts."""
    out = []
    for m in spec.mounts:
        if m.type == MountType.VOLUME:
            out.append(f"volume {m.name or m.source[:12]!r} at {m.destination}")
        elif m.type == MountType.BIND:
            out.append(f"bind mount {m.source} at {m.destination}")
    return out


NOT_FAILED_OVER = "not failed over from down host"
"""How a note on an instance left on its down host begins (cleared when the host is back)."""


def moved_note(how: str, source: str, left_behind: list[str]) -> str:
    """``how``: "moved by evacuation" or "failed over"; ``source``: the old host's name."""
    note = f"{how} from host {source}"
    if how == "failed over":
        note += ": its writable layer stayed there (started fresh from the image)"
    if left_behind:
        note += f"; without its data, which stayed on host {source}: {', '.join(left_behind)}"
        note += " (new volumes here start empty)"
    return note


def not_failed_over_note(source: str, reason: str) -> str:
    return f"{NOT_FAILED_OVER} {source}: {reason}"


def set_note(ctl: Controller, instance_id: str, note: str) -> None:
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, instance_id)
        if row is not None:
            row.move_note = note


def clear_not_failed_over(ctl: Controller, host_id: str) -> None:
    """The host is back: what stayed on it runs there again, with its data."""
    with ctl.sessions.begin() as s:
        s.execute(
            update(InstanceRow)
            .where(InstanceRow.host_id == host_id, InstanceRow.move_note.startswith(NOT_FAILED_OVER))
            .values(move_note="")
        )


def plan(ctl: Controller, s: Session, host_id: str, instance_ids: list[str]) -> DrainPlan:
    """Targets for ``instance_ids`` (all on ``host_id``): the scheduler's ``drain_plan``, which never
    uses the host itself, a down or draining host, or more than a target's capacity."""
    rows = {i: s.get(InstanceRow, i) for i in instance_ids}
    requests = {i: request_for(instance_spec(r)) for i, r in rows.items() if r is not None}
    overcommit = ctl.cluster.overcommit if ctl.cluster is not None else Overcommit()
    return drain_plan(host_id, _capacities(ctl, s), allocations(s), requests, overcommit)


def rehome(ctl: Controller, placed: Placed, target: str, **changes: object) -> int:
    """Record the instance on ``target`` (generation + 1) if nobody moved it meanwhile; returns the new
    generation. ``changes``: other columns to set in the same transaction."""
    instance_id = placed.spec.id
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, instance_id)
        if row is None:
            raise Conflict(f"instance {instance_id[:12]} was removed during the move")
        if row.generation != placed.generation or row.host_id != placed.host_id:
            raise Conflict(
                f"instance {row.name} was moved by someone else meanwhile (generation {row.generation})"
            )
        published = list(
            s.scalars(select(PublishedPortRow).where(PublishedPortRow.instance_id == instance_id))
        )
        for p in published:
            if s.get(PublishedPortRow, (target, p.protocol, p.host_port)) is not None:
                raise Conflict(
                    f"instance {row.name}: port {p.host_port}/{p.protocol} is already published on the target"
                )
        for p in published:
            s.delete(p)
        s.flush()
        for p in published:
            s.add(
                PublishedPortRow(
                    host_id=target,
                    protocol=p.protocol,
                    host_port=p.host_port,
                    instance_id=instance_id,
                    host_ip=p.host_ip,
                    container_port=p.container_port,
                )
            )
        row.host_id = target
        row.generation += 1
        for column, value in changes.items():
            setattr(row, column, value)
        return row.generation


async def announce(ctl: Controller, spec: InstanceSpec, target: str) -> None:
    """Every other host learns where the instance's ports now live; groups and names follow."""
    if spec.ports:
        await overlay.notify_hosts(ctl, except_host=target)
        await security_changed(ctl)
        await dnsrecords.announce(ctl, dnsrecords.spec_networks(spec))
