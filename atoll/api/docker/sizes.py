"""``SizeRw`` and ``SizeRootFs`` of a container, for ``size=1`` on inspect and list."""

from __future__ import annotations

from typing import Any

from atoll.api.docker.images import PROJECT
from atoll.model.errors import NotFound
from atoll.schemas import Instance
from atoll.services import images, rootfiles
from atoll.services.context import Controller


async def sizes(ctl: Controller, inst: Instance) -> dict[str, Any]:
    """The writable layer, and that plus the image."""
    rw = await rootfiles.size_rw(ctl, project=PROJECT, ref=inst.id)
    try:
        image = images.get_image(ctl, project=PROJECT, ref=inst.image_id).size
    except NotFound:
        image = 0
    return {"SizeRw": rw, "SizeRootFs": rw + image}
