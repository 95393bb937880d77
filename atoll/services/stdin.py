"""An instance's stdin (``docker run -i``, ``docker attach``) and tty size, passed through to its host."""

from __future__ import annotations

from atoll.model.errors import Conflict
from atoll.services.context import Controller
from atoll.services.instances import resolve
from atoll.services.projects import require_project


def _target(ctl: Controller, project: str, ref: str, need: str = "stdin") -> tuple[str, str]:
    with ctl.sessions() as s:
        require_project(s, project)
        row = resolve(s, project, ref)
        if not row.spec["process"].get(need):
            what = "stdin open" if need == "stdin" else "a tty"
            raise Conflict(f"instance {row.name} was not created with {what}")
        return row.id, row.host_id


async def write(ctl: Controller, *, project: str, ref: str, data: bytes) -> None:
    instance_id, host_id = _target(ctl, project, ref)
    await ctl.agents.get(host_id).write_stdin(instance_id, data)


async def close(ctl: Controller, *, project: str, ref: str) -> None:
    instance_id, host_id = _target(ctl, project, ref)
    await ctl.agents.get(host_id).close_stdin(instance_id)


async def resize(ctl: Controller, *, project: str, ref: str, rows: int, cols: int) -> None:
    instance_id, host_id = _target(ctl, project, ref, need="tty")
    await ctl.agents.get(host_id).resize_tty(instance_id, rows, cols)
