"""Waiting for an instance to start, for clients that attach before they start it (``docker run``)."""

from __future__ import annotations

from atoll.model.instance import InstanceStatus
from atoll.services.clock import parse_iso
from atoll.services.context import Controller, EventKind
from atoll.services.instances import resolve
from atoll.services.projects import require_project
from atoll.store.models import InstanceRow


def _started_since(row: InstanceRow, since: str) -> bool:
    if row.status == InstanceStatus.RUNNING:
        return True
    started, after = parse_iso(row.started_at), parse_iso(since)
    return started is not None and after is not None and started >= after


async def wait_started(ctl: Controller, *, project: str, ref: str, since: str) -> bool:
    """Block until the instance runs, or has started at or after ``since`` (it may have ended again
    already). False if it is removed first. Subscribes before reading, so no start is missed."""
    with ctl.sessions() as s:
        require_project(s, project)
        instance_id = resolve(s, project, ref).id
    async with ctl.events.subscribe(instance_id) as sub:
        while True:
            with ctl.sessions() as s:
                row = s.get(InstanceRow, instance_id)
                if row is None:
                    return False
                if _started_since(row, since):
                    return True
            event = await sub.next()
            if event.kind == EventKind.REMOVED:
                return False
