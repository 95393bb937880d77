"""Volumes of a project: create, list (with Docker's filters), inspect, remove, prune."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas import Volume, VolumeCreate, VolumesPruned
from atoll.services import volumes

router = APIRouter(prefix="/v1/projects/{project}/volumes", tags=["volumes"], responses=ERROR_RESPONSES)

Filter = Annotated[list[str] | None, Query()]


@router.post("", status_code=201)
async def create_volume(ctl: Ctl, project: str, body: VolumeCreate) -> Volume:
    return volumes.create_volume(ctl, project=project, request=body)


@router.get("")
async def list_volumes(
    ctl: Ctl,
    project: str,
    name: Filter = None,
    label: Filter = None,
    driver: Filter = None,
    dangling: Annotated[bool | None, Query(description="true: unused volumes; false: used ones")] = None,
) -> list[Volume]:
    return volumes.list_volumes(
        ctl, project=project, name=name or [], label=label or [], driver=driver or [], dangling=dangling
    )


@router.post("/prune")
async def prune_volumes(
    ctl: Ctl,
    project: str,
    all: Annotated[bool, Query(description="named volumes too, not only anonymous ones")] = False,
    label: Filter = None,
) -> VolumesPruned:
    return await volumes.prune(ctl, project=project, all=all, label=label or [])


@router.get("/{ref}")
async def get_volume(ctl: Ctl, project: str, ref: str) -> Volume:
    return volumes.get_volume(ctl, project=project, ref=ref)


@router.delete("/{ref}", status_code=204)
async def remove_volume(ctl: Ctl, project: str, ref: str) -> Response:
    await volumes.remove_volume(ctl, project=project, ref=ref)
    return Response(status_code=204)
