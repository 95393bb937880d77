"""Images as files: saving catalogued images as one ``docker save`` archive (written by a host that holds
them all), and the disk usage summary of a project's images."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy import select

from atoll.model.errors import Conflict
from atoll.model.imagehistory import HistoryEntry
from atoll.model.ports import HostAgent
from atoll.services import images
from atoll.services.bytestreams import started
from atoll.services.context import Controller
from atoll.services.projects import require_project
from atoll.store.models import ImageHostRow


async def save_images(ctl: Controller, *, project: str, refs: list[str]) -> AsyncIterator[bytes]:
    """The ``docker save`` stream of the images ``refs`` name. An image named by a tag carries that tag;
    by id, every tag it has in the project (as ``docker save <id>`` does not, but loading it then keeps
    its names). Resolution errors are raised before the first byte."""
    wanted: dict[str, list[str]] = {}
    holders: set[str] | None = None
    with ctl.sessions() as s:
        require_project(s, project)
        for ref in refs:
            row, tag = images.resolve(s, project, ref)
            tags = [str(tag)] if tag is not None else images.tags_of(s, project, row.id)
            have = wanted.setdefault(row.id, [])
            have.extend(t for t in tags if t not in have)
            hosts = set(s.scalars(select(ImageHostRow.host_id).where(ImageHostRow.image_id == row.id)))
            holders = hosts if holders is None else holders & hosts
    connected = [h for h in sorted(holders or ()) if h in ctl.agents]
    agent: HostAgent | None = ctl.agents.get(connected[0]) if connected else None
    if agent is None:
        raise Conflict("no connected host holds the content of every image named")
    return await started(agent.export_images(wanted))


def _holder(ctl: Controller, image_id: str) -> HostAgent | None:
    with ctl.sessions() as s:
        hosts = sorted(s.scalars(select(ImageHostRow.host_id).where(ImageHostRow.image_id == image_id)))
    connected = [h for h in hosts if h in ctl.agents]
    return ctl.agents.get(connected[0]) if connected else None


async def history(ctl: Controller, *, project: str, ref: str) -> list[HistoryEntry]:
    """The image's history steps, oldest first, from a host that holds it."""
    image = images.get_image(ctl, project=project, ref=ref)
    agent = _holder(ctl, image.id)
    if agent is None:
        raise Conflict(f"image {ref}: no connected host holds its content")
    return await agent.image_history(image.id)


async def layer_sizes(ctl: Controller, *, image_ids: list[str]) -> dict[str, int]:
    """diff_id -> size for the layers of these images (those whose host is connected)."""
    sizes: dict[str, int] = {}
    for image_id in image_ids:
        agent = _holder(ctl, image_id)
        if agent is None:
            continue
        for step in await agent.image_history(image_id):
            if step.layer:
                sizes[step.layer] = step.size
    return sizes
