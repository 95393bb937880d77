"""Images a host no longer holds: ``image_hosts`` checked against the host's own store.

A pull returns before its layers are on disk (agent/images/durable.py). If the host stops before the
sync, its store discards that import when it opens again, and the catalog would go on saying the host
holds an image it cannot run. So the catalog asks the host and believes it: at a single-node cloud's start
(``atoll up``, host and catalog in one process, so the questions are cheap), and for one image when
creating an instance there finds it missing (cluster members, where asking at every connection would
cost a round trip per image per host). The host's row goes; an image no host holds any more and no
instance uses leaves the catalog, in every project, as if the pull had not happened (an ``image
delete`` event each). Pulling it again brings it back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import delete, select

from atoll.model.ports import HostAgent
from atoll.services.context import Controller
from atoll.store.models import ImageDigestRow, ImageHostRow, ImageRow, ImageTagRow, InstanceRow

log = logging.getLogger(__name__)


async def forget_lost(ctl: Controller, agent: HostAgent, only: Iterable[str] | None = None) -> list[str]:
    """The images (``only`` these, else every one recorded on the host) that ``agent``'s host no longer
    holds, forgotten there; returns their ids."""
    with ctl.sessions() as s:
        recorded = set(s.scalars(select(ImageHostRow.image_id).where(ImageHostRow.host_id == agent.host_id)))
    candidates = sorted(recorded if only is None else recorded & set(only))
    lost = [image_id for image_id in candidates if not await agent.image_present(image_id)]
    if not lost:
        return []
    gone: list[tuple[str, str]] = []
    with ctl.sessions.begin() as s:
        mine = (ImageHostRow.host_id == agent.host_id) & ImageHostRow.image_id.in_(lost)
        s.execute(delete(ImageHostRow).where(mine))
        for image_id in lost:
            held = s.scalar(select(ImageHostRow.host_id).where(ImageHostRow.image_id == image_id).limit(1))
            used = s.scalar(select(InstanceRow.id).where(InstanceRow.image_id == image_id).limit(1))
            if held is not None or used is not None:
                continue
            projects = s.scalars(select(ImageRow.project).where(ImageRow.id == image_id))
            gone += [(project, image_id) for project in projects]
            s.execute(delete(ImageTagRow).where(ImageTagRow.image_id == image_id))
            s.execute(delete(ImageDigestRow).where(ImageDigestRow.image_id == image_id))
            s.execute(delete(ImageRow).where(ImageRow.id == image_id))
    for project, image_id in gone:
        ctl.activity.record("image", "delete", image_id, project, name=image_id)
    log.warning("host %s no longer holds images %s: forgotten there", agent.host_id, ", ".join(lost))
    return lost
