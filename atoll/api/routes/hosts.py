from __future__ import annotations

from fastapi import APIRouter

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas import Host
from atoll.services import hosts

router = APIRouter(prefix="/v1", tags=["hosts"], responses=ERROR_RESPONSES)


@router.get("/hosts")
async def list_hosts(ctl: Ctl) -> list[Host]:
    return hosts.list_hosts(ctl)
