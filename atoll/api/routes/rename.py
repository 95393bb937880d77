from __future__ import annotations

from fastapi import APIRouter

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas import Instance, InstanceRename
from atoll.services import rename

router = APIRouter(prefix="/v1/projects/{project}/instances", tags=["instances"], responses=ERROR_RESPONSES)


@router.post("/{ref}/rename")
async def rename_instance(ctl: Ctl, project: str, ref: str, body: InstanceRename) -> Instance:
    return await rename.rename_and_announce(ctl, project=project, ref=ref, name=body.name)
