"""Renaming an instance (``docker rename``). The name is also the instance's name on its networks, so the
hosts are told at once (``dnsrecords.announce``); its address and aliases do not change."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from atoll.model.errors import Conflict
from atoll.schemas import Instance
from atoll.services import dnsrecords
from atoll.services.context import Controller
from atoll.services.instances import resolve
from atoll.services.projects import require_project
from atoll.services.views import instance_view
from atoll.store.models import InstanceRow


async def rename(ctl: Controller, *, project: str, ref: str, name: str) -> Instance:
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve(s, project, ref)
        if row.name != name:
            taken = s.scalar(
                select(InstanceRow).where(InstanceRow.project == project, InstanceRow.name == name)
            )
            if taken is not None:
                raise Conflict(f"name: {name!r} is already in use by instance {taken.id[:12]}")
            row.name = name
            try:
                s.flush()
            except IntegrityError as e:
                raise Conflict(f"name: {name!r} is already in use") from e
        view = instance_view(row)
    await dnsrecords.announce(ctl, dnsrecords.instance_networks(ctl, view.id))
    return view
