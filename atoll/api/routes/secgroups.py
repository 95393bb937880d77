"""Security groups, their rules, and the groups of ports and instances, each under its project."""

from __future__ import annotations

from fastapi import APIRouter, Response

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas import (
    Port,
    SecurityGroup,
    SecurityGroupCreate,
    SecurityGroupRule,
    SecurityGroupRuleCreate,
    SecurityGroupsUpdate,
)
from atoll.services import secgroup_update, secgroups

router = APIRouter(prefix="/v1/projects/{project}", tags=["security groups"], responses=ERROR_RESPONSES)


@router.post("/security-groups", status_code=201)
async def create_group(ctl: Ctl, project: str, body: SecurityGroupCreate) -> SecurityGroup:
    return secgroups.create_group(ctl, project=project, request=body)


@router.get("/security-groups")
async def list_groups(ctl: Ctl, project: str) -> list[SecurityGroup]:
    return secgroups.list_groups(ctl, project=project)


@router.get("/security-groups/{ref}")
async def get_group(ctl: Ctl, project: str, ref: str) -> SecurityGroup:
    return secgroups.get_group(ctl, project=project, ref=ref)


@router.delete("/security-groups/{ref}", status_code=204)
async def remove_group(ctl: Ctl, project: str, ref: str) -> Response:
    await secgroups.remove_group(ctl, project=project, ref=ref)
    return Response(status_code=204)


@router.post("/security-groups/{ref}/rules", status_code=201)
async def add_rule(ctl: Ctl, project: str, ref: str, body: SecurityGroupRuleCreate) -> SecurityGroupRule:
    return await secgroups.add_rule(ctl, project=project, group=ref, request=body)


@router.delete("/security-group-rules/{ref}", status_code=204)
async def remove_rule(ctl: Ctl, project: str, ref: str) -> Response:
    await secgroups.remove_rule(ctl, project=project, ref=ref)
    return Response(status_code=204)


@router.put("/ports/{ref}/security-groups")
async def set_port_groups(ctl: Ctl, project: str, ref: str, body: SecurityGroupsUpdate) -> Port:
    return await secgroup_update.update_port(ctl, project=project, ref=ref, groups=body.security_groups)


@router.put("/instances/{ref}/security-groups")
async def set_instance_groups(ctl: Ctl, project: str, ref: str, body: SecurityGroupsUpdate) -> list[Port]:
    return await secgroup_update.update_instance(ctl, project=project, ref=ref, groups=body.security_groups)
