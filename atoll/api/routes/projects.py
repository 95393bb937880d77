from __future__ import annotations

from fastapi import APIRouter

from atoll.api.deps import Ctl
from atoll.api.errors import ERROR_RESPONSES
from atoll.schemas import Project, ProjectCreate
from atoll.services import projects

router = APIRouter(prefix="/v1", tags=["projects"], responses=ERROR_RESPONSES)


@router.get("/projects")
async def list_projects(ctl: Ctl) -> list[Project]:
    return projects.list_projects(ctl)


@router.post("/projects", status_code=201)
async def create_project(ctl: Ctl, body: ProjectCreate) -> Project:
    return projects.create_project(ctl, name=body.name)
