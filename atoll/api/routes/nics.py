"""Hot-plugged NICs: connect an existing instance to a network, or disconnect it (services/nics.py)."""

from __future__ import annotations

from fastapi import APIRouter

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas import Instance, InstanceNetwork
from atoll.services import nics

router = APIRouter(prefix="/v1/projects/{project}/instances", tags=["instances"], responses=ERROR_RESPONSES)


@router.post("/{ref}/networks")
async def connect_network(ctl: Ctl, project: str, ref: str, body: InstanceNetwork) -> Instance:
    return await nics.connect(ctl, project=project, ref=ref, request=body)


@router.delete("/{ref}/networks/{network}")
async def disconnect_network(ctl: Ctl, project: str, ref: str, network: str) -> Instance:
    return await nics.disconnect(ctl, project=project, ref=ref, network=network)
