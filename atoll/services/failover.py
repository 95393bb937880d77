"""Host failure: failover of restartable instances, and fencing of the host when it returns.

Failover: when a host goes ``down`` (no heartbeat for ``heartbeat_timeout``), each of its instances
whose restart policy would restart it (``always``, ``unless-stopped``, ``on-failure``) and that was
meant to run is placed elsewhere by the scheduler's ``drain_plan`` and started there with the same
id, name, ports (MAC and IP), published ports and security groups. Its writable layer is on the dead
host, so it starts fresh from the image. The row's placement generation goes up (``moves.rehome``).
Instances without a restart policy, or stopped by a user, stay recorded on the down host.

Local data: an instance with a volume or a bind mount keeps that data on the down host (no shared
storage yet). It is not failed over by default: starting it empty elsewhere (a database with a fresh
data directory) is worse than waiting, and the old data would diverge from the new when the host
returns. It stays on the down host with a ``move_note`` saying why, and runs there again once the host
is back and fenced. The label ``atoll.failover=without-data`` opts in: such an instance is failed over
and starts with empty volumes, and its ``move_note`` names what stayed behind. An instance that fits
on no other host also gets a note with the scheduler's reason.

Fencing: the old host may not be dead, only cut off, and its copies may still run. When it heartbeats
again it becomes ``fencing``, not ``ready``: the controller hands its agent the ids still placed there
(``HostAgent.fence``), the agent kills and removes every other instance it holds, and only then is the
host ``ready`` (placeable, its overlay entries trusted). So one address is never served by two copies
once the host is back in the cluster. While a host fails over or is fenced, the other of the two waits
(one lock per host), so a fence never runs with a keep-list that a failover is about to change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import select

from atoll.model.errors import AtollError
from atoll.model.instance import InstanceStatus
from atoll.services import imagecopy, lifecycle, moves
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.exits import RUNNING
from atoll.services.views import instance_spec
from atoll.store.models import HostRow, InstanceRow

log = logging.getLogger(__name__)

RESTARTABLE = ("always", "unless-stopped", "on-failure")
FAILOVER_LABEL = "atoll.failover"
WITHOUT_DATA = "without-data"
"""``atoll.failover=without-data``: fail over even though volumes or bind mounts keep data behind."""
FENCING = "fencing"
LOST_EXIT_CODE = 255

_locks: dict[tuple[int, str], asyncio.Lock] = {}
_tasks: set[asyncio.Task[Any]] = set()


def _lock(ctl: Controller, host_id: str) -> asyncio.Lock:
    return _locks.setdefault((id(ctl), host_id), asyncio.Lock())


def _spawn(coro: Coroutine[Any, Any, Any]) -> None:
    task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def hosts_down(ctl: Controller, host_ids: list[str]) -> None:
    """From the heartbeat watcher: fail over what ran on each host that just went down."""
    for host_id in host_ids:
        _spawn(fail_over(ctl, host_id))


async def fail_over(ctl: Controller, host_id: str) -> list[str]:
    """Restart the restartable instances of a down host elsewhere; returns the ids moved."""
    moved: list[str] = []
    async with _lock(ctl, host_id):
        with ctl.sessions() as s:
            host = s.get(HostRow, host_id)
            if host is None or host.state != "down":
                return moved
            name = host.name
            candidates, kept = [], {}
            for r in s.scalars(select(InstanceRow).where(InstanceRow.host_id == host_id)):
                if r.restart_policy not in RESTARTABLE or r.desired_state != RUNNING or r.user_stopped:
                    continue
                spec = instance_spec(r)
                left = moves.local_data(spec)
                if left and spec.labels.get(FAILOVER_LABEL) != WITHOUT_DATA:
                    kept[r.id] = (
                        f"its data is there: {', '.join(left)}; it runs again when the host returns "
                        f"(the label {FAILOVER_LABEL}={WITHOUT_DATA} fails it over without that data)"
                    )
                else:
                    candidates.append(r.id)
            plan = moves.plan(ctl, s, host_id, candidates) if candidates else None
        unmovable = {**kept, **(plan.unmovable if plan is not None else {})}
        for instance_id, reason in unmovable.items():
            log.warning("cannot fail over %s from down host %s: %s", instance_id, host_id, reason)
            moves.set_note(ctl, instance_id, moves.not_failed_over_note(name, reason))
        for instance_id, target in plan.moves if plan is not None else []:
            try:
                await _restart_elsewhere(ctl, instance_id, target, name)
                moved.append(instance_id)
            except AtollError as e:
                log.warning("failover of %s to host %s failed: %s", instance_id, target, e.message)
    return moved


async def _restart_elsewhere(ctl: Controller, instance_id: str, target: str, source_name: str) -> None:
    async with ctl.locks(instance_id):
        with ctl.sessions() as s:
            placed = moves.read(s, instance_id)
        await imagecopy.ensure_image(ctl, host_id=target, image_id=placed.spec.image_id)
        generation = moves.rehome(
            ctl,
            placed,
            target,
            # As seen from here, the run on the dead host ended: the start below begins a new one.
            status=InstanceStatus.EXITED,
            pid=0,
            exit_code=LOST_EXIT_CODE,
            finished_at=now_iso(),
            move_note=moves.moved_note("failed over", source_name, moves.local_data(placed.spec)),
        )
        await ctl.agents.get(target).create_instance(placed.spec)
    await lifecycle.start(ctl, project=placed.spec.project, ref=instance_id)
    await moves.announce(ctl, placed.spec, target)
    log.warning(
        "failed over %s from down host %s to host %s (generation %d, fresh writable layer)",
        instance_id,
        placed.host_id,
        target,
        generation,
    )


def host_returns(ctl: Controller, host_id: str) -> None:
    """From a heartbeat of a host that was down (its state is now ``fencing``): fence it, then ready."""
    _spawn(fence(ctl, host_id))


async def fence(ctl: Controller, host_id: str) -> list[str]:
    """Make the host drop every copy the controller placed elsewhere, then mark it ``ready``. On failure
    it goes back to ``down``, and its next heartbeat tries again."""
    async with _lock(ctl, host_id):
        with ctl.sessions() as s:
            keep = list(s.scalars(select(InstanceRow.id).where(InstanceRow.host_id == host_id)))
        try:
            removed = await ctl.agents.get(host_id).fence(keep)
        except Exception as e:
            log.warning("could not fence host %s (%s); it stays down until its next heartbeat", host_id, e)
            _set_state(ctl, host_id, "down")
            return []
        _set_state(ctl, host_id, "ready")
        moves.clear_not_failed_over(ctl, host_id)
    if removed:
        log.warning("fenced host %s: removed stale copies %s", host_id, ", ".join(removed))
    log.info("host %s is ready (fenced: %d stale copies removed)", host_id, len(removed))
    return removed


def _set_state(ctl: Controller, host_id: str, state: str) -> None:
    with ctl.sessions.begin() as s:
        host = s.get(HostRow, host_id)
        if host is not None and host.state == FENCING:
            host.state = state
