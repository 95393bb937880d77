"""The image garbage-collection policy: what the controller removes on its own, and when.

Two rules, applied by a background loop every ``interval`` seconds (``atoll image prune`` is the manual
command; see ``services/prune.py``):

1. **Garbage**: an image with no name left (no tag, no repo digest) that no instance uses is removed
   once it is older than ``min_age``. Such images appear when a pull or a build moves a tag away.
2. **Disk pressure** (kubelet's rule): when the filesystem of a host's image store is fuller than
   ``high`` percent, unused images that host holds are removed, least recently used first (the last
   time an instance was made from one, else when it was cataloged), until it is below ``low`` percent.
   Tagged images go too: they can be pulled again. Images used by any instance, public images (the
   starter image) and images used within ``min_age`` always stay.

Every removal is an ordinary forced removal (``images.remove_image``), so content leaves a host only
when no project's catalog and no instance refer to it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from atoll.model.errors import AtollError, Conflict, NotFound
from atoll.model.ports import HostAgent
from atoll.services import images
from atoll.services.clock import parse_iso
from atoll.services.context import Controller
from atoll.store.models import ImageDigestRow, ImageHostRow, ImageRow, ImageTagRow, InstanceRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GcPolicy:
    interval: float = 300.0
    """Seconds between passes; 0 turns the automatic GC off."""
    high: float = 85.0
    """Percent of the image filesystem in use above which unused images are removed..."""
    low: float = 80.0
    """...until usage is below this percent."""
    min_age: float = 3600.0
    """Seconds: an image cataloged or used more recently than this is never collected."""


@dataclass
class GcReport:
    deleted: list[str] = field(default_factory=list)
    """``project/image id`` of every catalog entry removed."""
    reclaimed: int = 0


def _last_use(row: ImageRow) -> datetime:
    return parse_iso(row.last_used or row.created_at) or datetime.min.replace(tzinfo=UTC)


def _unused(ctl: Controller, cutoff: datetime) -> list[ImageRow]:
    """Non-public images no instance uses and nobody used since ``cutoff``, least recently used first."""
    with ctl.sessions() as s:
        used = set(s.scalars(select(InstanceRow.image_id)))
        rows = s.scalars(select(ImageRow).where(ImageRow.public.is_(False)))
        idle = [r for r in rows if r.id not in used and _last_use(r) < cutoff]
        s.expunge_all()
    return sorted(idle, key=lambda r: (_last_use(r), r.id))


def _named(ctl: Controller) -> set[tuple[str, str]]:
    with ctl.sessions() as s:
        tags = s.execute(select(ImageTagRow.project, ImageTagRow.image_id))
        digests = s.execute(select(ImageDigestRow.project, ImageDigestRow.image_id))
        return {(p, i) for p, i in [*tags, *digests]}


def _held_by(ctl: Controller, host_id: str) -> set[str]:
    with ctl.sessions() as s:
        return set(s.scalars(select(ImageHostRow.image_id).where(ImageHostRow.host_id == host_id)))


async def _remove(ctl: Controller, row: ImageRow, report: GcReport) -> bool:
    try:
        removed = await images.remove_image(ctl, project=row.project, ref=row.id, force=True)
    except (NotFound, Conflict):  # removed or put to use meanwhile
        return False
    if removed.deleted:
        report.deleted.append(f"{row.project}/{row.id}")
        report.reclaimed += row.size
        log.info("image GC: removed %s of project %s (%d bytes)", row.id, row.project, row.size)
    return bool(removed.deleted)


async def _relieve(
    ctl: Controller, agent: HostAgent, idle: list[ImageRow], policy: GcPolicy, report: GcReport
) -> None:
    usage = await agent.image_disk_usage()
    if usage.used_percent <= policy.high:
        return
    log.info("image GC: host %s image filesystem %.1f%% full", agent.host_id, usage.used_percent)
    held = _held_by(ctl, agent.host_id)
    for row in idle:
        if usage.used_percent < policy.low:
            return
        if row.id in held and await _remove(ctl, row, report):
            usage = await agent.image_disk_usage()


async def collect(ctl: Controller, policy: GcPolicy, *, now: datetime | None = None) -> GcReport:
    """One pass of both rules over every project and every connected host."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=policy.min_age)
    report = GcReport()
    named = _named(ctl)
    for row in _unused(ctl, cutoff):
        if (row.project, row.id) not in named:
            await _remove(ctl, row, report)
    for agent in ctl.agents.all():
        try:
            await _relieve(ctl, agent, _unused(ctl, cutoff), policy, report)
        except AtollError as e:
            log.warning("image GC: host %s: %s", agent.host_id, e)
    return report


async def run(ctl: Controller, policy: GcPolicy) -> None:
    """The background loop; a failed pass is logged and retried at the next interval."""
    if policy.interval <= 0:
        return
    while True:
        await asyncio.sleep(policy.interval)
        try:
            await collect(ctl, policy)
        except Exception:
            log.exception("image GC pass failed")
