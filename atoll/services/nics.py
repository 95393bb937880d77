"""Hot-plugged NICs: connecting an existing instance to a network, and disconnecting it.

An instance's ports are otherwise made with it (``netports.attach``); here one port is added to, or
removed from, an instance that exists, whatever its state. The database is the truth, in two steps:

1. One transaction adds the port (its address, its security groups: those of the instance's other
   ports, else the project's ``default``) or deletes it (which frees the address, and disassociates a
   floating IP), and rewrites the instance's spec with its new list of ports.
2. The instance's host converges the instance to that spec (``HostAgent.replug_instance``): for a
   running instance the NIC appears in, or disappears from, its namespace at once; a stopped one gets
   it at its next start. If the host refuses a connect, the port is deleted again and the host is told
   the old spec, so nothing is half-made. A host that misses a disconnect removes the veth at its next
   reconcile, which derives everything from the database.

Then the other hosts are told, as after a create or a removal: overlay forwarding entries, security
groups (the address joins or leaves its groups everywhere) and names (the instance and its aliases
resolve on the new network by the time the call returns, and no longer on the old one).

Device names: a new port takes the lowest free ``ethN``; the first NIC with a gateway holds the
default route (so disconnecting ``eth0`` moves it to the next one).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.instance import InstanceSpec
from atoll.model.network import PortSpec
from atoll.model.ports import HostAgent
from atoll.schemas import Instance, InstanceNetwork
from atoll.services import dnsrecords, netports, overlay, routernudge
from atoll.services.clock import now_iso
from atoll.services.context import Controller
from atoll.services.instances import resolve
from atoll.services.networks import resolve_network
from atoll.services.projects import require_project
from atoll.services.routeruse import refuse_external
from atoll.services.secgroup_notify import security_changed
from atoll.services.secgroup_ports import bind, port_groups, set_groups
from atoll.services.views import instance_spec, instance_view, spec_json
from atoll.store.models import InstanceRow, NetworkRow, PortRow
from atoll.store.routing import FloatingIpRow

log = logging.getLogger(__name__)

ATTEMPTS = 5


@dataclass(frozen=True)
class _Net:
    """What the calls after the transaction need of the network (its row is not used outside it)."""

    id: str
    name: str
    type: str = ""

    @classmethod
    def of(cls, row: NetworkRow) -> _Net:
        return cls(row.id, row.name, row.type)


@dataclass(frozen=True)
class _Change:
    instance_id: str
    network: _Net
    port: PortSpec
    old: InstanceSpec
    new: InstanceSpec
    agent: HostAgent


def _cpus(row: InstanceRow) -> float | None:
    cpus = row.spec["resources"].get("cpus")
    return float(cpus) if cpus is not None else None


def _network(s: Session, project: str, ref: str) -> NetworkRow:
    try:
        network = resolve_network(s, project, ref)
    except NotFound as e:
        raise NotFound(f"network: {e.message}") from e
    refuse_external(network, "network")
    return network


def _free_device(ports: list[PortSpec]) -> str:
    taken = {p.device for p in ports}
    return next(f"eth{i}" for i in range(netports.MAX_NICS + 1) if f"eth{i}" not in taken)


def _add(ctl: Controller, project: str, instance_id: str, request: InstanceNetwork) -> _Change:
    with ctl.sessions.begin() as s:
        row = resolve(s, project, instance_id)
        old = instance_spec(row)
        network = _network(s, project, request.network)
        if any(p.network_id == network.id for p in old.ports):
            raise Conflict(f"network: instance {row.name} is already connected to network {network.name}")
        if len(old.ports) >= netports.MAX_NICS:
            raise InvalidInput(f"network: instance {row.name} has {netports.MAX_NICS} NICs, the most it may")
        port = netports.new_port(
            s,
            project=project,
            instance_id=row.id,
            network=network,
            device=_free_device(old.ports),
            request=request,
            field="",
            now=now_iso(),
        )
        if old.ports:
            set_groups(s, [port.id], port_groups(s, old.ports[0].id))
        else:
            bind(s, project=project, ports=[port], groups=None)
        new = replace(old, ports=[*old.ports, port])
        row.spec = spec_json(new, _cpus(row))
        agent = ctl.agents.get(row.host_id)
        return _Change(row.id, _Net.of(network), port, old, new, agent)


def _remove(ctl: Controller, project: str, instance_id: str, network_ref: str) -> tuple[_Change, bool]:
    """Delete the instance's port on the network; also whether a floating IP was associated with it."""
    with ctl.sessions.begin() as s:
        row = resolve(s, project, instance_id)
        old = instance_spec(row)
        network = _network(s, project, network_ref)
        port = next((p for p in old.ports if p.network_id == network.id), None)
        if port is None:
            raise NotFound(f"network: instance {row.name} is not connected to network {network.name}")
        fip = s.scalar(select(FloatingIpRow.id).where(FloatingIpRow.fixed_port_id == port.id))
        port_row = s.get(PortRow, port.id)
        if port_row is not None:
            s.delete(port_row)  # its address, groups and floating IP association go with it
        new = replace(old, ports=[p for p in old.ports if p.id != port.id])
        row.spec = spec_json(new, _cpus(row))
        agent = ctl.agents.get(row.host_id)
        return _Change(row.id, _Net.of(network), port, old, new, agent), fip is not None


def _undo_add(ctl: Controller, change: _Change) -> None:
    with ctl.sessions.begin() as s:
        port_row = s.get(PortRow, change.port.id)
        if port_row is not None:
            s.delete(port_row)
        row = s.get(InstanceRow, change.instance_id)
        if row is not None:
            row.spec = spec_json(change.old, _cpus(row))


def _instance_id(ctl: Controller, project: str, ref: str) -> str:
    with ctl.sessions() as s:
        require_project(s, project)
        return resolve(s, project, ref).id


async def _tell_hosts(ctl: Controller, change: _Change) -> None:
    """The other hosts learn of the change (each catches up at its reconcile if it misses this)."""
    await overlay.notify_hosts(ctl, except_host=change.agent.host_id)
    await security_changed(ctl)
    await dnsrecords.announce(ctl, [change.network.id])


def _record(ctl: Controller, action: str, change: _Change, view: Instance) -> None:
    ctl.events.publish_changed(view.id)
    ctl.activity.record(
        "network",
        action,
        change.network.id,
        view.project,
        container=view.id,
        name=change.network.name,
        type=change.network.type,
    )


async def connect(ctl: Controller, *, project: str, ref: str, request: InstanceNetwork) -> Instance:
    """Give an instance a NIC on ``request.network`` (with a fixed ``ip`` and ``aliases`` if given)."""
    instance_id = _instance_id(ctl, project, ref)
    async with ctl.locks(instance_id):
        for attempt in range(ATTEMPTS):
            try:
                change = _add(ctl, project, instance_id, request)
                break
            except netports.AllocationRace:
                if attempt == ATTEMPTS - 1:
                    raise Conflict("network: addresses are in heavy contention; try again") from None
        try:
            await change.agent.replug_instance(change.new)
        except BaseException:
            _undo_add(ctl, change)
            with contextlib.suppress(Exception):
                await change.agent.replug_instance(change.old)
            raise
    await _tell_hosts(ctl, change)
    view = get_view(ctl, project, instance_id)
    _record(ctl, "connect", change, view)
    return view


async def disconnect(ctl: Controller, *, project: str, ref: str, network: str) -> Instance:
    """Remove the instance's NIC on ``network`` and release its address."""
    instance_id = _instance_id(ctl, project, ref)
    async with ctl.locks(instance_id):
        change, floating = _remove(ctl, project, instance_id, network)
        try:
            await change.agent.replug_instance(change.new)
        except Exception:  # stored already: the host's next reconcile removes the NIC
            log.exception("host %s did not unplug %s yet", change.agent.host_id, change.port.device)
    await _tell_hosts(ctl, change)
    if floating:
        await routernudge.routing_changed(ctl)
    view = get_view(ctl, project, instance_id)
    _record(ctl, "disconnect", change, view)
    return view


def get_view(ctl: Controller, project: str, instance_id: str) -> Instance:
    with ctl.sessions() as s:
        return instance_view(resolve(s, project, instance_id))
