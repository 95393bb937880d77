"""Tenant networking: networks, subnets and (read-only, for now) ports, each under its project."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas import Network, NetworkCreate, Port, Subnet, SubnetCreate
from atoll.services import netports, networks

router = APIRouter(prefix="/v1/projects/{project}", tags=["networks"], responses=ERROR_RESPONSES)

NetworkFilter = Annotated[str | None, Query(description="network name or id")]


@router.post("/networks", status_code=201)
async def create_network(ctl: Ctl, project: str, body: NetworkCreate) -> Network:
    return networks.create_network(ctl, project=project, request=body)


@router.get("/networks")
async def list_networks(ctl: Ctl, project: str) -> list[Network]:
    return networks.list_networks(ctl, project=project)


@router.get("/networks/{ref}")
async def get_network(ctl: Ctl, project: str, ref: str) -> Network:
    return networks.get_network(ctl, project=project, ref=ref)


@router.delete("/networks/{ref}", status_code=204)
async def remove_network(ctl: Ctl, project: str, ref: str) -> Response:
    networks.remove_network(ctl, project=project, ref=ref)
    return Response(status_code=204)


@router.post("/subnets", status_code=201)
async def create_subnet(ctl: Ctl, project: str, body: SubnetCreate) -> Subnet:
    return networks.create_subnet(ctl, project=project, request=body)


@router.get("/subnets")
async def list_subnets(ctl: Ctl, project: str, network: NetworkFilter = None) -> list[Subnet]:
    return networks.list_subnets(ctl, project=project, network=network)


@router.get("/subnets/{ref}")
async def get_subnet(ctl: Ctl, project: str, ref: str) -> Subnet:
    return networks.get_subnet(ctl, project=project, ref=ref)


@router.delete("/subnets/{ref}", status_code=204)
async def remove_subnet(ctl: Ctl, project: str, ref: str) -> Response:
    networks.remove_subnet(ctl, project=project, ref=ref)
    return Response(status_code=204)


@router.get("/ports")
async def list_ports(
    ctl: Ctl,
    project: str,
    network: NetworkFilter = None,
    instance: Annotated[str | None, Query(description="instance name or id")] = None,
) -> list[Port]:
    return netports.list_ports(ctl, project=project, network=network, instance=instance)


@router.get("/ports/{ref}")
async def get_port(ctl: Ctl, project: str, ref: str) -> Port:
    return netports.get_port(ctl, project=project, ref=ref)
