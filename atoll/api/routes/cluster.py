"""Cluster endpoints of the native API: hosts with capacity and state, drain, removal, join tokens."""

from __future__ import annotations

from fastapi import APIRouter, Response

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.host_schemas import HostDetail, Token, TokenCreate
from atoll.schemas_moves import EvacuateRequest, Evacuation
from atoll.services import evacuate, membership

router = APIRouter(prefix="/v1/cluster", tags=["cluster"], responses=ERROR_RESPONSES)


@router.get("/hosts")
async def list_hosts(ctl: Ctl) -> list[HostDetail]:
    return membership.list_hosts(ctl)


@router.get("/hosts/{ref}")
async def get_host(ctl: Ctl, ref: str) -> HostDetail:
    return membership.get_host(ctl, ref=ref)


@router.post("/hosts/{ref}/drain")
async def drain_host(ctl: Ctl, ref: str) -> HostDetail:
    return membership.set_drained(ctl, ref=ref, drained=True)


@router.post("/hosts/{ref}/undrain")
async def undrain_host(ctl: Ctl, ref: str) -> HostDetail:
    return membership.set_drained(ctl, ref=ref, drained=False)


@router.post("/hosts/{ref}/evacuate")
async def evacuate_host(ctl: Ctl, ref: str, body: EvacuateRequest | None = None) -> Evacuation:
    """Drain the host, then move every instance on it elsewhere (cold migration)."""
    return await evacuate.evacuate(ctl, ref=ref, force=body.force if body else False)


@router.delete("/hosts/{ref}", status_code=204)
async def remove_host(ctl: Ctl, ref: str) -> Response:
    membership.remove_host(ctl, ref=ref)
    return Response(status_code=204)


@router.post("/tokens", status_code=201)
async def create_token(ctl: Ctl, body: TokenCreate) -> Token:
    return membership.create_token(ctl, ttl=body.ttl)
