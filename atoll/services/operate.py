"""Operations on a running instance that pass through to its host: pause/unpause (the cgroup
freezer), top, stats, and updating resource limits. Each resolves the instance in a short read, calls
the host with no transaction open, then records what changed."""

from __future__ import annotations

from dataclasses import replace

from atoll.model.errors import Conflict
from atoll.model.instance import InstanceStatus
from atoll.model.ports import HostAgent
from atoll.model.usage import InstanceStats, ProcessTable
from atoll.schemas import Instance, ResourcesWire, RestartPolicyWire
from atoll.services.config_merge import merge_resources
from atoll.services.context import Controller
from atoll.services.exits import record_activity
from atoll.services.instances import resolve
from atoll.services.projects import require_project
from atoll.services.views import instance_spec, instance_view, spec_json
from atoll.store.models import InstanceRow


def _running(ctl: Controller, project: str, ref: str) -> tuple[str, HostAgent, bool]:
    with ctl.sessions() as s:
        require_project(s, project)
        row = resolve(s, project, ref)
        if row.status != InstanceStatus.RUNNING:
            raise Conflict(f"instance {row.name} is not running")
        return row.id, ctl.agents.get(row.host_id), row.paused


def _set_paused(ctl: Controller, instance_id: str, paused: bool) -> None:
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, instance_id)
        if row is None:
            return
        row.paused = paused
        view = instance_view(row)
    ctl.events.publish_changed(instance_id)
    record_activity(ctl, "pause" if paused else "unpause", view)


def is_paused(ctl: Controller, instance_id: str) -> bool:
    with ctl.sessions() as s:
        row = s.get(InstanceRow, instance_id)
        return row is not None and row.paused and row.status == InstanceStatus.RUNNING


async def pause(ctl: Controller, *, project: str, ref: str) -> None:
    instance_id, agent, paused = _running(ctl, project, ref)
    async with ctl.locks(instance_id):
        if paused:
            raise Conflict(f"instance {ref} is already paused")
        await agent.pause_instance(instance_id)
        _set_paused(ctl, instance_id, True)


async def unpause(ctl: Controller, *, project: str, ref: str) -> None:
    instance_id, agent, paused = _running(ctl, project, ref)
    async with ctl.locks(instance_id):
        if not paused:
            raise Conflict(f"instance {ref} is not paused")
        await agent.unpause_instance(instance_id)
        _set_paused(ctl, instance_id, False)


async def top(ctl: Controller, *, project: str, ref: str, ps_args: str = "") -> ProcessTable:
    instance_id, agent, _ = _running(ctl, project, ref)
    return await agent.instance_top(instance_id, ps_args)


async def stats(ctl: Controller, *, project: str, ref: str) -> InstanceStats:
    instance_id, agent, _ = _running(ctl, project, ref)
    return await agent.instance_stats(instance_id)


async def update(
    ctl: Controller,
    *,
    project: str,
    ref: str,
    resources: ResourcesWire,
    restart_policy: RestartPolicyWire | None = None,
) -> Instance:
    """Replace the limits given (fields left ``None`` keep their value) and, optionally, the restart
    policy. A running instance gets the new limits at once; the spec keeps them for later runs."""
    with ctl.sessions() as s:
        require_project(s, project)
        instance_id = resolve(s, project, ref).id
    async with ctl.locks(instance_id):
        with ctl.sessions() as s:
            row = resolve(s, project, instance_id)
            current = instance_view(row).resources
            merged = current.model_copy(
                update={k: v for k, v in resources.model_dump().items() if v is not None}
            )
            if merged.cpus is not None and resources.cpu_quota is None and resources.cpu_period is None:
                # The view shows the quota and period that ``cpus`` stands for; keep only ``cpus``.
                merged = merged.model_copy(update={"cpu_quota": None, "cpu_period": None})
            if resources.cpu_quota is not None or resources.cpu_period is not None:
                merged = merged.model_copy(update={"cpus": None})
            new = merge_resources(ResourcesWire.model_validate(merged.model_dump()))
            spec = replace(instance_spec(row), resources=new)
            if restart_policy is not None and row.auto_remove and restart_policy.name != "no":
                raise Conflict("restart_policy: an auto-removed instance cannot have a restart policy")
            agent = ctl.agents.get(row.host_id)
        await agent.update_resources(instance_id, new)
        with ctl.sessions.begin() as s:
            row = resolve(s, project, instance_id)
            row.spec = spec_json(spec, merged.cpus)
            if restart_policy is not None:
                row.restart_policy = restart_policy.name
                row.restart_max_retries = restart_policy.max_retries
            view = instance_view(row)
    ctl.events.publish_changed(instance_id)
    record_activity(ctl, "update", view)
    return view
