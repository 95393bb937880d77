"""The lifecycle verbs: start, stop, kill, restart, wait.

Each verb holds the instance's in-process lock (so two verbs on one instance do not interleave), records
intent in a short transaction, calls the agent with no transaction open, then applies the answer. Exits
arrive through ``exits.record_exit`` (from the agent's report), which wakes waiters; waiting never polls.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from atoll.model.errors import Conflict
from atoll.model.instance import ExitInfo, InstanceStatus
from atoll.schemas import Instance, WaitResult
from atoll.services.context import Controller, EventKind, Subscription
from atoll.services.exits import (
    ACTIVE,
    RUNNING,
    STOPPED,
    record_activity,
    record_exit,
    record_started,
    wait_result,
)
from atoll.services.instances import resolve
from atoll.services.projects import require_project
from atoll.services.signals import canonical_signal
from atoll.services.views import instance_spec, instance_view
from atoll.store.models import InstanceRow

WaitCondition = Literal["not-running", "next-exit", "removed"]


def _resolve_id(ctl: Controller, project: str, ref: str) -> str:
    with ctl.sessions() as s:
        require_project(s, project)
        return resolve(s, project, ref).id


def _current(ctl: Controller, instance_id: str, fallback: Instance) -> Instance:
    """The instance now; if it is gone (auto-removed), the last view marked exited."""
    with ctl.sessions() as s:
        row = s.get(InstanceRow, instance_id)
        if row is not None:
            return instance_view(row)
    return fallback.model_copy(update={"status": InstanceStatus.EXITED.value, "desired_state": STOPPED})


async def _settle(ctl: Controller, sub: Subscription, instance_id: str, timeout: float) -> None:
    """Wait, up to ``timeout``, for the agent's exit report of an instance that was told to end."""
    deadline = time.monotonic() + timeout
    while True:
        with ctl.sessions() as s:
            row = s.get(InstanceRow, instance_id)
            if row is None or row.status != InstanceStatus.RUNNING:
                return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(sub.next(), remaining)
        except TimeoutError:
            return


async def start(ctl: Controller, *, project: str, ref: str) -> Instance:
    instance_id = _resolve_id(ctl, project, ref)
    async with ctl.locks(instance_id):
        with ctl.sessions.begin() as s:
            row = resolve(s, project, instance_id)
            if row.status in ACTIVE:
                return instance_view(row)
            agent = ctl.agents.get(row.host_id)
            row.desired_state, row.user_stopped, row.error = RUNNING, False, ""
            row.restart_count, row.restart_streak, row.restart_at = 0, 0, None
            spec, host_id, before = instance_spec(row), row.host_id, instance_view(row)
        ctl.starts.begin(instance_id)
        try:
            state = await agent.start_instance(spec)
        except BaseException as e:
            ctl.starts.end(instance_id)
            with ctl.sessions.begin() as s:
                failed = s.get(InstanceRow, instance_id)
                if failed is not None:
                    failed.desired_state = STOPPED
                    failed.error = getattr(e, "message", None) or str(e) or type(e).__name__
            raise
        exited_early = ctl.starts.end(instance_id)
        if not exited_early and record_started(ctl, host_id, state) and not state.running:
            await record_exit(ctl, host_id, instance_id, state.exit or ExitInfo(exit_code=0))
    return _current(ctl, instance_id, before)


async def stop(ctl: Controller, *, project: str, ref: str, timeout: float | None = None) -> Instance:
    """Send the stop signal, SIGKILL after ``timeout`` seconds (default: the instance's stop_timeout)."""
    instance_id = _resolve_id(ctl, project, ref)
    async with ctl.locks(instance_id), ctl.events.subscribe(instance_id) as sub:
        with ctl.sessions.begin() as s:
            row = resolve(s, project, instance_id)
            status = row.status
            row.desired_state = STOPPED
            if status not in ACTIVE:
                return instance_view(row)
            row.user_stopped = True
            spec, host_id, before = instance_spec(row), row.host_id, instance_view(row)
        grace = spec.stop_timeout if timeout is None else timeout
        await ctl.agents.get(host_id).stop_instance(instance_id, spec.stop_signal, grace)
        if status == InstanceStatus.RESTARTING:
            with ctl.sessions.begin() as s:
                now = s.get(InstanceRow, instance_id)
                if now is not None and now.status == InstanceStatus.RESTARTING:
                    now.status, now.restart_at = InstanceStatus.EXITED, None
            ctl.events.publish_changed(instance_id)
        else:
            await _settle(ctl, sub, instance_id, ctl.stop_grace)
    record_activity(ctl, "stop", before)
    return _current(ctl, instance_id, before)


async def kill(ctl: Controller, *, project: str, ref: str, signal: str = "SIGKILL") -> Instance:
    """Signal the main process. Like ``docker kill``, this counts as a user stop: the restart policy
    will not bring the instance back when it exits."""
    name = canonical_signal(signal, "signal")
    instance_id = _resolve_id(ctl, project, ref)
    async with ctl.locks(instance_id), ctl.events.subscribe(instance_id) as sub:
        with ctl.sessions.begin() as s:
            row = resolve(s, project, instance_id)
            if row.status != InstanceStatus.RUNNING:
                raise Conflict(f"instance {row.name} is not running")
            row.user_stopped = True
            host_id, before = row.host_id, instance_view(row)
        await ctl.agents.get(host_id).signal_instance(instance_id, name)
        record_activity(ctl, "kill", before, signal=name)
        if name == "SIGKILL":
            await _settle(ctl, sub, instance_id, ctl.stop_grace)
    return _current(ctl, instance_id, before)


async def restart(ctl: Controller, *, project: str, ref: str, timeout: float | None = None) -> Instance:
    instance_id = _resolve_id(ctl, project, ref)
    ctl.restarting.add(instance_id)
    try:
        await stop(ctl, project=project, ref=instance_id, timeout=timeout)
        view = await start(ctl, project=project, ref=instance_id)
    finally:
        ctl.restarting.discard(instance_id)
    record_activity(ctl, "restart", view)
    return view


async def wait(
    ctl: Controller, *, project: str, ref: str, condition: WaitCondition = "not-running"
) -> WaitResult:
    """Block until the instance is not running (nor restarting), its next exit, or its removal."""
    instance_id = _resolve_id(ctl, project, ref)
    async with ctl.events.subscribe(instance_id) as sub:
        with ctl.sessions() as s:
            row = resolve(s, project, instance_id)
            last = wait_result(row)
            if condition == "not-running" and row.status not in ACTIVE:
                return last
        while True:
            event = await sub.next()
            if event.kind == EventKind.REMOVED:
                return event.exit or last
            if event.kind == EventKind.EXITED and event.exit is not None:
                last = event.exit
                if condition == "next-exit":
                    return last
            if condition == "not-running":
                with ctl.sessions() as s:
                    row_now = s.get(InstanceRow, instance_id)
                    if row_now is None:
                        return last
                    if row_now.status not in ACTIVE:
                        return wait_result(row_now)
