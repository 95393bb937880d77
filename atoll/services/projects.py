"""Projects: the tenants. Every other resource belongs to one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, NotFound
from atoll.schemas import Project
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.views import project_view
from atoll.store.models import ProjectRow


def require_project(s: Session, project: str) -> ProjectRow:
    row = s.get(ProjectRow, project)
    if row is None:
        raise NotFound(f"project {project!r} not found")
    return row


def list_projects(ctl: Controller) -> list[Project]:
    with ctl.sessions() as s:
        return [project_view(r) for r in s.scalars(select(ProjectRow).order_by(ProjectRow.name))]


def get_project(ctl: Controller, *, name: str) -> Project:
    with ctl.sessions() as s:
        return project_view(require_project(s, name))


def create_project(ctl: Controller, *, name: str) -> Project:
    with ctl.sessions.begin() as s:
        if s.get(ProjectRow, name) is not None:
            raise Conflict(f"project {name!r} already exists")
        row = ProjectRow(name=name, created_at=now_iso())
        s.add(row)
    return project_view(row)
