"""Copying an image's content to the host an instance was placed on.

The copy streams from a host that holds the image (``export_image``, an OCI layout tar) through the
controller into the target (``import_images``, which verifies every digest). No transaction is open
while bytes move; ``image_hosts`` learns of the new copy afterwards.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from atoll.model.errors import AtollError, Conflict
from atoll.services.context import Controller
from atoll.services.membership import record_image_on_host
from atoll.store.models import ImageHostRow

log = logging.getLogger(__name__)


async def ensure_image(ctl: Controller, *, host_id: str, image_id: str) -> None:
    with ctl.sessions() as s:
        holders = list(s.scalars(select(ImageHostRow.host_id).where(ImageHostRow.image_id == image_id)))
    if host_id in holders:
        return
    target = ctl.agents.get(host_id)
    if await target.image_present(image_id):
        record_image_on_host(ctl, image_id=image_id, host_id=host_id)
        return
    sources = [h for h in holders if h in ctl.agents]
    if not sources:
        raise Conflict(f"image {image_id[:19]}: no connected host holds it, so it cannot be copied")
    errors = []
    for source in sources:
        try:
            await target.import_images(ctl.agents.get(source).export_image(image_id))
        except AtollError as e:
            errors.append(f"from {source[:12]}: {e.message}")
            continue
        record_image_on_host(ctl, image_id=image_id, host_id=host_id)
        log.info("copied image %s from host %s to host %s", image_id[:19], source, host_id)
        return
    raise Conflict(f"image {image_id[:19]}: could not be copied to host {host_id[:12]}: {'; '.join(errors)}")
