"""The controller's side of ``atoll.model.ports.ControlPlane``, over the database.

Agents call it in-process under ``atoll up`` and through an HTTP adapter in a cluster. Every call is
idempotent: an agent that restarts re-reports what it sees, and a repeated report changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from sqlalchemy import select

from atoll.model.cluster import HostReport
from atoll.model.dnsrecords import NetworkNames
from atoll.model.instance import ExitInfo, InstanceStatus, RuntimeState
from atoll.model.overlay import HostNetworkReport, OverlayNetwork
from atoll.model.ports import Assignment
from atoll.model.routing import RouterSpec
from atoll.model.secgroups import HostSecurity
from atoll.services import controllers, dnsrecords, hostnets, membership, overlay, routerhosts
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.exits import RUNNING, record_exit, record_started
from atoll.services.routernudge import routing_changed
from atoll.services.secgroup_ports import host_security
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

    async def overlay_networks(self, host_id: str) -> list[OverlayNetwork]:
        return overlay.overlay_networks(self._ctl, host_id)

    async def report_host_network(self, host_id: str, report: HostNetworkReport) -> None:
        hostnets.record_report(self._ctl, host_id, report)

    async def routers(self, host_id: str) -> list[RouterSpec]:
        """The routers bound to this host (see ``services/routerhosts.py``). Routers whose host is gone
        or not ready are rebound first, and then every host is nudged to pick up the move."""
        with self._ctl.sessions.begin() as s:
            moved = routerhosts.rebind(s, asking_host=host_id)
        if moved:
            _nudge(routing_changed(self._ctl))
        with self._ctl.sessions() as s:
            return routerhosts.router_specs_for_host(s, host_id)

    async def security(self, host_id: str) -> HostSecurity:
        return host_security(self._ctl, host_id)

    async def network_names(self, host_id: str) -> list[NetworkNames]:
        return dnsrecords.network_names(self._ctl, host_id)

    async def heartbeat(self, host_id: str, report: HostReport) -> None:
        membership.heartbeat(self._ctl, host_id, report)

    async def controllers(self, host_id: str) -> list[str]:
        return controllers.addresses(self._ctl.sessions, controllers.expiry(self._ctl))


_nudges: set[asyncio.Task[None]] = set()
"""Nudges under way (a reference keeps each task alive until it is done)."""


def _nudge(call: Coroutine[Any, Any, None]) -> None:
    """Run ``call`` without waiting for it: the host that asked is in its reconcile, and the nudge
    reaches it too."""
    task = asyncio.get_running_loop().create_task(call)
    _nudges.add(task)
    task.add_done_callback(_nudges.discard)
