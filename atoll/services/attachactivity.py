"""What a run attaches, in the activity log: network connect/disconnect and volume mount/unmount.

dockerd logs, for every start of a container, ``network connect`` for each network it joins (the
default one too) and ``volume mount`` for each volume it mounts, just before ``start``; and when the
run ends, after ``die``, ``network disconnect`` and ``volume unmount`` for the same. Bind mounts and
tmpfs are not volumes and log nothing. Atoll records them at the same two points (a run started, a
run ended), so restarts by policy and runs started through the native API show up alike.

The names and types come from the rows read in the transaction that records the start or the exit
(:func:`attached`, once per network and volume: ``attachnames``); the entries themselves are written
after it (:func:`record_up`, :func:`record_down`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from atoll.schemas import Instance
from atoll.services.context import Controller


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    type: str


@dataclass(frozen=True)
class Volume:
    id: str
    name: str
    driver: str
    destination: str
    rw: bool


@dataclass(frozen=True)
class Attached:
    """The networks and volumes of one run, in the instance's order."""

    networks: tuple[Network, ...] = ()
    volumes: tuple[Volume, ...] = ()


def attached(ctl: Controller, s: Session, inst: Instance) -> Attached:
    """Read inside the transaction that holds ``inst``'s row: a network or volume removed since is
    left out (it can only be gone when the instance no longer uses it)."""
    names = ctl.attach_names
    networks = []
    for nic in inst.networks:
        network = names.network(s, nic.network)
        if network is not None:
            networks.append(Network(nic.network, *network))
    volumes = []
    for m in inst.mounts:
        if m.type != "volume":
            continue
        volume = names.volume(s, m.source)
        if volume is not None:
            volumes.append(Volume(m.source, volume[0], volume[1], m.destination, m.rw))
    return Attached(tuple(networks), tuple(volumes))


def record_up(ctl: Controller, inst: Instance, what: Attached) -> None:
    """Before the run's ``start``: its networks joined, then its volumes mounted (dockerd's order)."""
    for n in what.networks:
        ctl.activity.record(
            "network", "connect", n.id, inst.project, container=inst.id, name=n.name, type=n.type
        )
    for v in what.volumes:
        ctl.activity.record(
            "volume",
            "mount",
            v.id,
            inst.project,
            name=v.name,
            container=inst.id,
            destination=v.destination,
            driver=v.driver,
            propagation="",
            **{"read/write": "true" if v.rw else "false"},
        )


def record_down(ctl: Controller, inst: Instance, what: Attached) -> None:
    """After the run's ``die``: its networks left, then its volumes unmounted (dockerd's order)."""
    for n in what.networks:
        ctl.activity.record(
            "network", "disconnect", n.id, inst.project, container=inst.id, name=n.name, type=n.type
        )
    for v in what.volumes:
        ctl.activity.record(
            "volume", "unmount", v.id, inst.project, name=v.name, container=inst.id, driver=v.driver
        )
