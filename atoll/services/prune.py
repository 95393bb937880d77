"""Image garbage collection: ``docker image prune`` semantics, per project.

Without ``all``, only dangling images go (no tag left); with ``all``, every image no instance uses.
Images used by any instance (running or not) stay, as do public images (the starter image is shared by
every project). Each removal is an ordinary removal (``images.remove_image``), so content leaves a host
only when no project and no instance refers to it any more, and the host then frees its layers.
"""

from __future__ import annotations

from sqlalchemy import select

from atoll.model.errors import Conflict, NotFound
from atoll.schemas import ImagesPruned
from atoll.services import images
from atoll.services.context import Controller
from atoll.services.projects import require_project
from atoll.store.models import ImageRow, ImageTagRow, InstanceRow


async def prune_images(ctl: Controller, *, project: str, all: bool = False) -> ImagesPruned:
    with ctl.sessions() as s:
        require_project(s, project)
        used = set(s.scalars(select(InstanceRow.image_id)))
        tagged = set(s.scalars(select(ImageTagRow.image_id).where(ImageTagRow.project == project)))
        rows = list(
            s.scalars(select(ImageRow).where(ImageRow.project == project, ImageRow.public.is_(False)))
        )
    result = ImagesPruned()
    for row in rows:
        if row.id in used or (row.id in tagged and not all):
            continue
        try:
            removed = await images.remove_image(ctl, project=project, ref=row.id, force=True)
        except (NotFound, Conflict):  # removed or put to use meanwhile
            continue
        result.untagged.extend(removed.untagged)
        if removed.deleted:
            result.deleted.extend(removed.deleted)
            result.reclaimed += row.size
    return result
