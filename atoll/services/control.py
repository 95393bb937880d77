"""The controller's side of ``atoll.model.ports.ControlPlane``, over the database.

Agents call it in-process under ``atoll up`` and through an HTTP adapter in a cluster. Every call is
idempotent: an agent that restarts re-reports what it sees, and a repeated report changes nothing.
"""

from __future__ import annotations

from sqlalchemy import select

from atoll.model.cluster import HostReport
from atoll.model.instance import ExitInfo, InstanceStatus, RuntimeState
from atoll.model.ports import Assignment
from atoll.services import membership
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.exits import RUNNING, record_exit, record_started
from atoll.services.views import instance_spec
from atoll.store.models import HostRow, InstanceRow


class LocalControlPlane:
    def __init__(self, ctl: Controller) -> None:
        self._ctl = ctl

    def _seen(self, host_id: str) -> None:
        with self._ctl.sessions.begin() as s:
            host = s.get(HostRow, host_id)
            if host is not None:
                host.last_seen = now_iso()

    async def assignments(self, host_id: str) -> list[Assignment]:
        """Every instance placed on ``host_id``, with what the controller wants of it."""
        self._seen(host_id)
        with self._ctl.sessions() as s:
            rows = s.scalars(
                select(InstanceRow).where(InstanceRow.host_id == host_id).order_by(InstanceRow.id)
            )
            return [
                Assignment(
                    spec=instance_spec(row),
                    desired_running=row.desired_state == RUNNING,
                    status=InstanceStatus(row.status),
                    restart_at=row.restart_at or 0.0,
                )
                for row in rows
            ]

    async def instance_started(self, host_id: str, state: RuntimeState) -> None:
        if state.running:
            record_started(self._ctl, host_id, state)
        elif state.exit is not None:
            await record_exit(self._ctl, host_id, state.id, state.exit)

    async def instance_exited(self, host_id: str, instance_id: str, exit: ExitInfo) -> float | None:
        return await record_exit(self._ctl, host_id, instance_id, exit)

    async def heartbeat(self, host_id: str, report: HostReport) -> None:
        membership.heartbeat(self._ctl, host_id, report)
