"""Changing the security groups of running instances' ports; hosts apply the change at once."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from atoll.model.errors import InvalidInput
from atoll.schemas import Port
from atoll.services.context import Controller
from atoll.services.instances import resolve
from atoll.services.netports import get_port
from atoll.services.projects import require_project
from atoll.services.secgroup_notify import security_changed
from atoll.services.secgroup_ports import resolve_all, set_groups
from atoll.store.models import PortRow


async def update_port(ctl: Controller, *, project: str, ref: str, groups: Sequence[str]) -> Port:
    port_id = get_port(ctl, project=project, ref=ref).id
    with ctl.sessions.begin() as s:
        set_groups(s, [port_id], resolve_all(s, project, groups, "security_groups"))
    await security_changed(ctl)
    return get_port(ctl, project=project, ref=port_id)


async def update_instance(ctl: Controller, *, project: str, ref: str, groups: Sequence[str]) -> list[Port]:
    """Set the groups of every port of an instance."""
    with ctl.sessions.begin() as s:
        require_project(s, project)
        instance_id = resolve(s, project, ref).id
        port_ids = list(s.scalars(select(PortRow.id).where(PortRow.instance_id == instance_id)))
        if not port_ids:
            raise InvalidInput(f"security_groups: instance {ref} has no network ports")
        set_groups(s, port_ids, resolve_all(s, project, groups, "security_groups"))
    await security_changed(ctl)
    return [get_port(ctl, project=project, ref=p) for p in port_ids]
