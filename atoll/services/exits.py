"""Applying what hosts observe: a run started, a run ended. Shared by the control plane (agents report)
and by the user operations (an agent's answer to start carries the same facts).

Reports are idempotent. An exit counts only for a run the controller believes is under way: the instance
is RUNNING, or a start is awaiting the agent, or it is RESTARTING and the report names a different end
time than the one recorded. Anything else is a repeat and changes nothing.
"""

from __future__ import annotations

import logging
import time

from atoll.model.instance import ExitInfo, InstanceStatus, RestartPolicy, RuntimeState
from atoll.schemas import Instance, WaitResult
from atoll.services import removal_notify
from atoll.services.attachactivity import attached, record_down, record_up
from atoll.services.clock import now_iso, seconds_between
from atoll.services.context import Controller, EventKind, InstanceEvent
from atoll.services.restart import next_streak, restart_delay
from atoll.services.views import instance_view
from atoll.services.volumes import anonymous_volumes, forget
from atoll.store.models import InstanceRow

log = logging.getLogger(__name__)

RUNNING = "running"
STOPPED = "stopped"
ACTIVE = (InstanceStatus.RUNNING, InstanceStatus.RESTARTING)


def wait_result(row: InstanceRow) -> WaitResult:
    return WaitResult(exit_code=row.exit_code or 0, oom_killed=row.oom_killed, error=row.error)


def record_started(ctl: Controller, host_id: str | None, state: RuntimeState) -> bool:
    """Mark the instance running. Returns False when the report is stale or unknown."""
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, state.id)
        if row is None or (host_id is not None and row.host_id != host_id):
            return False
        if row.status == InstanceStatus.RUNNING and row.pid == state.pid:
            return True
        stale = state.started_at and state.started_at == row.started_at and row.status not in ACTIVE
        if stale:
            return False
        row.status = InstanceStatus.RUNNING
        row.pid = state.pid
        row.started_at = state.started_at or now_iso()
        row.exit_code = None
        row.oom_killed = False
        row.error = ""
        row.restart_at = None
        view = instance_view(row)
        attachments = attached(ctl, s, view)
    ctl.events.publish(InstanceEvent(state.id, EventKind.CHANGED))
    record_up(ctl, view, attachments)
    record_activity(ctl, "start", view)
    return True


def _is_new_exit(ctl: Controller, row: InstanceRow, exit: ExitInfo) -> bool:
    if row.status == InstanceStatus.RUNNING:
        return True
    repeated = bool(exit.finished_at) and exit.finished_at == row.finished_at
    if ctl.starts.pending(row.id):
        return not repeated
    return row.status == InstanceStatus.RESTARTING and bool(exit.finished_at) and not repeated


async def record_exit(ctl: Controller, host_id: str | None, instance_id: str, exit: ExitInfo) -> float | None:
    """Record how a run ended and apply the restart policy. Returns the back-off when it restarts."""
    now = time.time()
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, instance_id)
        if row is None or (host_id is not None and row.host_id != host_id):
            return None
        if not _is_new_exit(ctl, row, exit):
            if row.status == InstanceStatus.RESTARTING and row.restart_at is not None:
                return max(0.0, row.restart_at - now)
            return None
        # A failed restart never ran: only a run that was under way has a duration.
        ran = row.status == InstanceStatus.RUNNING or ctl.starts.pending(instance_id)
        ctl.starts.mark_exited(instance_id)
        finished = exit.finished_at or now_iso()
        ran_for = seconds_between(row.started_at, finished) if ran else 0.0
        row.exit_code, row.oom_killed, row.error = exit.exit_code, exit.oom_killed, exit.error
        row.finished_at, row.pid = finished, 0
        delay = None
        if row.desired_state == RUNNING:
            policy = RestartPolicy(name=row.restart_policy, max_retries=row.restart_max_retries)
            delay = restart_delay(
                policy,
                exit.exit_code,
                row.restart_count,
                row.user_stopped,
                ran_for,
                streak=row.restart_streak,
            )
        if delay is None:
            row.status, row.desired_state, row.restart_at = InstanceStatus.EXITED, STOPPED, None
        else:
            row.status = InstanceStatus.RESTARTING
            row.restart_count += 1
            row.restart_streak = next_streak(row.restart_streak, ran_for)
            row.restart_at = now + delay
        result = wait_result(row)
        auto_remove = (
            delay is None
            and row.auto_remove
            and instance_id not in ctl.removing
            and instance_id not in ctl.restarting
        )
        host = row.host_id
        view = instance_view(row)
        attachments = attached(ctl, s, view)
    ctl.events.publish(InstanceEvent(instance_id, EventKind.EXITED, result))
    record_activity(ctl, "die", view, exitCode=str(result.exit_code))
    record_down(ctl, view, attachments)
    if auto_remove:
        await auto_remove_instance(ctl, host, instance_id, result)
    return delay


async def auto_remove_instance(ctl: Controller, host_id: str, instance_id: str, last: WaitResult) -> None:
    """``--rm``: the instance goes, with its anonymous volumes, as in Docker."""
    with ctl.sessions() as s:
        anonymous = anonymous_volumes(s, instance_id)
    ctl.removing.add(instance_id)
    try:
        await ctl.agents.get(host_id).remove_instance(instance_id)
    except Exception as e:
        log.warning("auto-remove of instance %s failed: %s", instance_id, e)
        with ctl.sessions.begin() as s:
            row = s.get(InstanceRow, instance_id)
            if row is not None:
                row.error = f"auto-remove failed: {e}"
        return
    finally:
        ctl.removing.discard(instance_id)
    gone = removal_notify.footprint(ctl, instance_id)
    delete_instance_row(ctl, instance_id, last)
    await forget(ctl, anonymous)
    await removal_notify.removed(ctl, gone, host_id=host_id)


def delete_instance_row(ctl: Controller, instance_id: str, last: WaitResult | None) -> None:
    view = None
    with ctl.sessions.begin() as s:
        row = s.get(InstanceRow, instance_id)
        if row is not None:
            view = instance_view(row)
            s.delete(row)
    ctl.events.publish(InstanceEvent(instance_id, EventKind.REMOVED, last))
    if view is not None:
        record_activity(ctl, "destroy", view)


def record_activity(ctl: Controller, action: str, inst: Instance, **attributes: str) -> None:
    """An instance's entry in the activity log, with Docker's attributes (name, image, labels)."""
    ctl.activity.record(
        "container",
        action,
        inst.id,
        inst.project,
        **inst.labels,
        image=inst.image,
        name=inst.name,
        **attributes,
    )
