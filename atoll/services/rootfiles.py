"""An instance's files, seen from the controller: each call resolves the instance in a short read and
hands its host the instance's id and image layers (so a stopped instance's tree can be mounted)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from atoll.model.errors import Conflict
from atoll.model.ports import HostAgent
from atoll.model.rootfiles import FileChange, PathStat
from atoll.services.bytestreams import started
from atoll.services.context import Controller
from atoll.services.instances import resolve
from atoll.services.projects import require_project
from atoll.services.views import instance_spec


def _locate(ctl: Controller, project: str, ref: str) -> tuple[str, list[str], HostAgent, bool]:
    with ctl.sessions() as s:
        require_project(s, project)
        row = resolve(s, project, ref)
        spec = instance_spec(row)
        host = row.host_id
    if not host or host not in ctl.agents:
        raise Conflict(f"instance {ref}: its host is not connected")
    return row.id, spec.layers, ctl.agents.get(host), spec.readonly_rootfs


async def path_stat(ctl: Controller, *, project: str, ref: str, path: str) -> PathStat:
    instance_id, layers, agent, _ = _locate(ctl, project, ref)
    return await agent.instance_path_stat(instance_id, layers, path)


async def archive(ctl: Controller, *, project: str, ref: str, path: str) -> AsyncIterator[bytes]:
    instance_id, layers, agent, _ = _locate(ctl, project, ref)
    return await started(agent.instance_archive(instance_id, layers, path))


async def export(ctl: Controller, *, project: str, ref: str) -> AsyncIterator[bytes]:
    instance_id, layers, agent, _ = _locate(ctl, project, ref)
    return await started(agent.instance_archive(instance_id, layers, "/", contents=True))


async def extract(
    ctl: Controller, *, project: str, ref: str, path: str, archive: AsyncIterator[bytes]
) -> None:
    instance_id, layers, agent, readonly = _locate(ctl, project, ref)
    if readonly:
        raise Conflict(f"instance {ref}: its root filesystem is read-only")
    await agent.extract_to_instance(instance_id, layers, path, archive)


async def changes(ctl: Controller, *, project: str, ref: str) -> list[FileChange]:
    instance_id, layers, agent, _ = _locate(ctl, project, ref)
    return await agent.instance_changes(instance_id, layers)


async def size_rw(ctl: Controller, *, project: str, ref: str) -> int:
    instance_id, _, agent, _ = _locate(ctl, project, ref)
    return await agent.instance_size_rw(instance_id)
