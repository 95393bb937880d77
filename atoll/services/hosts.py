"""Hosts: the machines whose agents run instances. Registering a host records it and connects its agent."""

from __future__ import annotations

from sqlalchemy import select

from atoll.model.ports import HostAgent
from atoll.schemas import Host
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.views import host_view
from atoll.store.models import HostRow

READY = "ready"
OFFLINE = "offline"


def register_host(ctl: Controller, agent: HostAgent, *, name: str, runtime: str, cgroup_version: int) -> Host:
    """Record (or refresh) the agent's host and route its instances to ``agent``. Idempotent."""
    with ctl.sessions.begin() as s:
        row = s.get(HostRow, agent.host_id)
        if row is None:
            row = HostRow(id=agent.host_id)
            s.add(row)
        row.name, row.runtime, row.cgroup_version = name, runtime, cgroup_version
        row.state, row.last_seen = READY, now_iso()
    ctl.agents.add(agent)
    return host_view(row)


def unregister_host(ctl: Controller, *, host_id: str) -> None:
    """The agent went away: its instances keep running, but nothing can be asked of it."""
    ctl.agents.discard(host_id)
    with ctl.sessions.begin() as s:
        row = s.get(HostRow, host_id)
        if row is not None:
            row.state, row.last_seen = OFFLINE, now_iso()


def list_hosts(ctl: Controller) -> list[Host]:
    with ctl.sessions() as s:
        return [host_view(r) for r in s.scalars(select(HostRow).order_by(HostRow.name, HostRow.id))]
