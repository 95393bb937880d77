"""``atoll host evacuate HOST``: drain a host, then move every instance on it elsewhere by cold migration.

Targets come from the scheduler's ``drain_plan`` (never the host itself, never a down or draining one,
never beyond a target's capacity). Each instance then moves on its own, under its lifecycle lock:

1. the image is copied to the target if it lacks it (``imagecopy``);
2. pre-copy: the source streams the writable layer (``export_writable``) through the controller into
   the target's staging area (``receive_writable``) while the instance still runs;
3. the instance stops on the source (as a user stop, so its restart policy does not bring it back);
   downtime starts here;
4. delta: only what changed since the pre-copy began, plus a manifest, so deletions follow too;
5. the row moves to the target (generation + 1, published ports along; ``moves.rehome``); the source
   removes its stopped copy while the target starts (a stopped copy serves nothing; the other hosts
   keep tunnelling to the source until step 7, so they see a short outage, never two servers);
6. the target creates it with the same id, name, ports (MAC and IP), published ports and groups,
   installs the staged layer, and starts it if it was running; downtime ends when it runs;
7. every other host is told (overlay forwarding, security groups, names).

If anything fails before step 5 the instance is started again on the source and the staged layer is
dropped. Volumes and bind mounts keep their data on the source host: such instances are refused
unless ``force``, and then start with an empty volume on the target (the report lists them, and the
instance's ``move_note`` says so for as long as it lives there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from sqlalchemy import select

from atoll.model.errors import AtollError, Conflict
from atoll.schemas_moves import Evacuation, MovedInstance, UnmovedInstance
from atoll.services import imagecopy, lifecycle, membership, moves
from atoll.services.context import Controller
from atoll.services.exits import STOPPED, record_started
from atoll.store.models import InstanceRow

log = logging.getLogger(__name__)

CLOCK_MARGIN = 2.0
"""Seconds subtracted from the pre-copy's start when choosing what the delta copies: a file changed
just before the pre-copy read it is copied again rather than missed (hosts' clocks are NTP-synced)."""


class _Counted:
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.bytes = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.bytes += len(chunk)
            yield chunk


class _Phases:
    """Milliseconds per step of the downtime window, from the stop on the source on."""

    def __init__(self) -> None:
        self._start = self._last = time.monotonic()
        self.ms: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.ms[name] = round((now - self._last) * 1000, 1)
        self._last = now

    def total(self) -> float:
        return round((self._last - self._start) * 1000, 1)


async def evacuate(ctl: Controller, *, ref: str, force: bool = False) -> Evacuation:
    host = membership.get_host(ctl, ref=ref)
    if ctl.cluster is None or host.id not in ctl.agents:
        raise Conflict(
            f"host {host.name} is {host.state}: its instances cannot be copied from it "
            "(restartable ones fail over by themselves when a host goes down)"
        )
    membership.set_drained(ctl, ref=host.id, drained=True)
    report = Evacuation(host=host.id)
    with ctl.sessions() as s:
        rows = list(s.scalars(select(InstanceRow).where(InstanceRow.host_id == host.id)))
        names = {r.id: r.name for r in rows}
        movable = []
        for row in rows:
            left = moves.local_data(moves.read(s, row.id).spec)
            if left and not force:
                report.unmoved.append(
                    UnmovedInstance(
                        id=row.id,
                        name=row.name,
                        reason=f"its data would stay on host {host.name}: {', '.join(left)}; "
                        "--force moves it without that data",
                    )
                )
            else:
                movable.append(row.id)
        plan = moves.plan(ctl, s, host.id, movable)
    for instance_id, reason in plan.unmovable.items():
        report.unmoved.append(UnmovedInstance(id=instance_id, name=names[instance_id], reason=reason))
    for instance_id, target in plan.moves:
        try:
            report.moved.append(await migrate(ctl, instance_id, target))
        except AtollError as e:
            log.warning("could not move %s off host %s: %s", instance_id, host.id, e.message)
            report.unmoved.append(UnmovedInstance(id=instance_id, name=names[instance_id], reason=e.message))
    return report


async def migrate(ctl: Controller, instance_id: str, target: str) -> MovedInstance:
    """Move one instance to ``target`` (steps 1-7 above)."""
    async with ctl.locks(instance_id):
        with ctl.sessions() as s:
            placed = moves.read(s, instance_id)
            source_name = moves.host_name(s, placed.host_id)
        spec, source_id = placed.spec, placed.host_id
        if source_id == target:
            raise Conflict(f"instance {spec.name} already runs on host {target}")
        source, dest = ctl.agents.get(source_id), ctl.agents.get(target)
        await imagecopy.ensure_image(ctl, host_id=target, image_id=spec.image_id)
        precopy_started = time.time()
        pre = _Counted(source.export_writable(instance_id, 0.0))
        await dest.receive_writable(instance_id, aiter(pre))
        phases = _Phases()
        try:
            if placed.was_running:
                with ctl.sessions.begin() as s:
                    row = s.get(InstanceRow, instance_id)
                    if row is not None:
                        row.desired_state, row.user_stopped = STOPPED, True
                await source.stop_instance(instance_id, spec.stop_signal, spec.stop_timeout)
                phases.mark("stop")
            delta = _Counted(source.export_writable(instance_id, precopy_started - CLOCK_MARGIN))
            await dest.receive_writable(instance_id, aiter(delta))
            phases.mark("delta")
            note = moves.moved_note("moved by evacuation", source_name, moves.local_data(spec))
            generation = moves.rehome(ctl, placed, target, move_note=note)
        except BaseException:
            with contextlib.suppress(AtollError):
                await dest.discard_writable(instance_id)
            if placed.was_running:
                log.warning("move of %s failed: starting it again on host %s", instance_id, source_id)
                with contextlib.suppress(AtollError):
                    await _start(ctl, spec.project, instance_id, locked=True)
            raise
        # The source's copy is stopped (it serves nothing): it is removed while the target starts its
        # own, which takes the longest of all the steps.
        removing = asyncio.create_task(source.remove_instance(instance_id))
        try:
            await dest.create_instance(spec)
            await dest.install_writable(instance_id)
            phases.mark("create and install")
        except BaseException:
            await _settle_removal(removing, source_id, instance_id)
            raise
    try:
        # The lifecycle lock is released first: start takes it itself.
        if placed.was_running:
            await _start(ctl, spec.project, instance_id, locked=False)
            phases.mark("start on target")
    finally:
        await _settle_removal(removing, source_id, instance_id)
    downtime = phases.total() if placed.was_running else None
    await moves.announce(ctl, spec, target)
    log.info(
        "moved %s from host %s to host %s (generation %d, downtime %s ms: %s; %d + %d bytes)",
        instance_id,
        source_id,
        target,
        generation,
        f"{downtime:.0f}" if downtime is not None else "-",
        ", ".join(f"{k} {v:.0f}" for k, v in phases.ms.items()),
        pre.bytes,
        delta.bytes,
    )
    return MovedInstance(
        id=instance_id,
        name=spec.name,
        target=target,
        generation=generation,
        was_running=placed.was_running,
        downtime_ms=round(downtime, 1) if downtime is not None else None,
        precopy_bytes=pre.bytes,
        delta_bytes=delta.bytes,
        phases_ms=phases.ms if placed.was_running else {},
        left_behind=moves.local_data(spec),
    )


async def _settle_removal(removing: asyncio.Task[None], source_id: str, instance_id: str) -> None:
    try:
        await removing
    except AtollError as e:  # the source's reconcile removes it anyway: it is no longer assigned there
        log.warning("host %s could not remove the moved %s yet: %s", source_id, instance_id, e.message)


async def _start(ctl: Controller, project: str, instance_id: str, *, locked: bool) -> None:
    if not locked:
        await lifecycle.start(ctl, project=project, ref=instance_id)
        return
    # Under the lock already (rolling back on the source): the agent directly, then the record.
    with ctl.sessions() as s:
        placed = moves.read(s, instance_id)
    state = await ctl.agents.get(placed.host_id).start_instance(placed.spec)
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, instance_id)
        if row is not None:
            row.desired_state, row.user_stopped = "running", False
    record_started(ctl, placed.host_id, state)
