"""Routers and floating IPs, each under its project. A change is committed, then pushed to the hosts
(``routernudge``), so it is in effect when the response arrives."""

from __future__ import annotations

from fastapi import APIRouter, Response

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas_routing import (
    FloatingIp,
    FloatingIpAssociate,
    FloatingIpCreate,
    Router,
    RouterCreate,
    RouterInterfaceRequest,
    RouterUpdate,
)
from atoll.services import floatingips, routers
from atoll.services.routernudge import routing_changed

router = APIRouter(prefix="/v1/projects/{project}", tags=["routers"], responses=ERROR_RESPONSES)


@router.post("/routers", status_code=201)
async def create_router(ctl: Ctl, project: str, body: RouterCreate) -> Router:
    out = routers.create_router(ctl, project=project, request=body)
    await routing_changed(ctl)
    return out


@router.get("/routers")
async def list_routers(ctl: Ctl, project: str) -> list[Router]:
    return routers.list_routers(ctl, project=project)


@router.get("/routers/{ref}")
async def get_router(ctl: Ctl, project: str, ref: str) -> Router:
    return routers.get_router(ctl, project=project, ref=ref)


@router.patch("/routers/{ref}")
async def update_router(ctl: Ctl, project: str, ref: str, body: RouterUpdate) -> Router:
    out = routers.update_router(ctl, project=project, ref=ref, request=body)
    await routing_changed(ctl)
    return out


@router.delete("/routers/{ref}", status_code=204)
async def remove_router(ctl: Ctl, project: str, ref: str) -> Response:
    routers.remove_router(ctl, project=project, ref=ref)
    await routing_changed(ctl)
    return Response(status_code=204)


@router.post("/routers/{ref}/interfaces")
async def add_interface(ctl: Ctl, project: str, ref: str, body: RouterInterfaceRequest) -> Router:
    out = routers.add_interface(ctl, project=project, ref=ref, request=body)
    await routing_changed(ctl)
    return out


@router.delete("/routers/{ref}/interfaces/{subnet}")
async def remove_interface(ctl: Ctl, project: str, ref: str, subnet: str) -> Router:
    out = routers.remove_interface(ctl, project=project, ref=ref, subnet_ref=subnet)
    await routing_changed(ctl)
    return out


@router.post("/floatingips", status_code=201)
async def create_fip(ctl: Ctl, project: str, body: FloatingIpCreate) -> FloatingIp:
    out = floatingips.create_fip(ctl, project=project, request=body)
    await routing_changed(ctl)
    return out


@router.get("/floatingips")
async def list_fips(ctl: Ctl, project: str) -> list[FloatingIp]:
    return floatingips.list_fips(ctl, project=project)


@router.get("/floatingips/{ref}")
async def get_fip(ctl: Ctl, project: str, ref: str) -> FloatingIp:
    return floatingips.get_fip(ctl, project=project, ref=ref)


@router.post("/floatingips/{ref}/associate")
async def associate_fip(ctl: Ctl, project: str, ref: str, body: FloatingIpAssociate) -> FloatingIp:
    out = floatingips.associate_fip(ctl, project=project, ref=ref, request=body)
    await routing_changed(ctl)
    return out


@router.post("/floatingips/{ref}/disassociate")
async def disassociate_fip(ctl: Ctl, project: str, ref: str) -> FloatingIp:
    out = floatingips.disassociate_fip(ctl, project=project, ref=ref)
    await routing_changed(ctl)
    return out


@router.delete("/floatingips/{ref}", status_code=204)
async def remove_fip(ctl: Ctl, project: str, ref: str) -> Response:
    floatingips.remove_fip(ctl, project=project, ref=ref)
    await routing_changed(ctl)
    return Response(status_code=204)
