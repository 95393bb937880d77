"""Renaming an instance. The name lives only in the controller's row and the stored spec; a running
container keeps its hostname (as in Docker, where the hostname is fixed at create time)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from atoll.model.errors import Conflict, InvalidInput
from atoll.schemas import Instance
from atoll.services import dnsrecords
from atoll.services.context import Controller
from atoll.services.exits import record_activity
from atoll.services.instances import resolve
from atoll.services.projects import require_project
from atoll.services.views import instance_view
from atoll.store.models import InstanceRow

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


def rename(ctl: Controller, *, project: str, ref: str, name: str) -> Instance:
    if not NAME.match(name):
        raise InvalidInput(f"name: {name!r} is not a valid name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    with ctl.sessions.begin() as s:
        require_project(s, project)
        row = resolve(s, project, ref)
        if row.name == name:
            return instance_view(row)
        taken = s.scalar(select(InstanceRow).where(InstanceRow.project == project, InstanceRow.name == name))
        if taken is not None:
            raise Conflict(f"name: {name!r} is already in use by instance {taken.id[:12]}")
        old = row.name
        row.name = name
        try:
            s.flush()
        except IntegrityError as e:
            raise Conflict(f"name: {name!r} is already in use") from e
        view = instance_view(row)
    ctl.events.publish_changed(view.id)
    record_activity(ctl, "rename", view, oldName=old)
    return view


async def rename_and_announce(ctl: Controller, *, project: str, ref: str, name: str) -> Instance:
    """``rename``, then tell the hosts: the name is also the instance's name on its networks, so it
    resolves by the time the call returns (a rename that only calls ``rename`` resolves after the
    hosts' next reconcile)."""
    view = rename(ctl, project=project, ref=ref, name=name)
    await dnsrecords.announce(ctl, dnsrecords.instance_networks(ctl, view.id))
    return view
