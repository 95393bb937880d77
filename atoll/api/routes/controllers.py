"""``GET /v1/cluster/controllers``: the controllers sharing this cloud's database, alive or expired."""

from __future__ import annotations

from fastapi import APIRouter

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas_controllers import ControllerInfo
from atoll.services import controllers

router = APIRouter(prefix="/v1/cluster", tags=["cluster"], responses=ERROR_RESPONSES)


@router.get("/controllers")
async def list_controllers(ctl: Ctl) -> list[ControllerInfo]:
    return controllers.listing(ctl.sessions, controllers.expiry(ctl))
