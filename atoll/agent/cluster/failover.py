"""An agent's ``ControlPlane`` when several controllers serve the cloud: one at a time, the next on failure.

Calls go to the controller that answered last. When a call cannot reach it (connection refused, reset,
timed out: ``wire.client.Unreachable``), the same call is tried on the next address, and so on once
round the list; the first that answers becomes the current one. A controller that accepts connections
but does not answer a heartbeat in time is skipped too (``skip``). Every ``ControlPlane`` call is
idempotent (``services/control.py``), so repeating one that a dying controller may have half-handled is
safe. The list starts with the controllers kept in ``membership.json`` and is refreshed after each
heartbeat from ``ControlPlane.controllers`` (``refresh``), and saved when it changes, so an agent that
restarts while its first controller is gone still finds the others. That list holds only controllers
that renewed their presence lately: a retired or dead one drops out of it, and so out of the agent's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from atoll.agent.cluster.membership import Membership, identity, save
from atoll.model.ports import ControlPlane
from atoll.wire import pki
from atoll.wire.client import Channel, Unreachable, make_proxy
from atoll.wire.shapes import method_shapes

log = logging.getLogger("atoll.agent")


class FailoverControlPlane:
    """Quacks like a ``ControlPlane``: every protocol method is looked up in ``__getattr__``."""

    def __init__(self, addresses: list[str], connect: Callable[[str], ControlPlane]) -> None:
        if not addresses:
            raise ValueError("controllers: at least one address is needed")
        self._connect = connect
        self._proxies: dict[str, ControlPlane] = {}
        self.addresses = list(dict.fromkeys(addresses))
        self.current = self.addresses[0]

    def _proxy(self, address: str) -> ControlPlane:
        if address not in self._proxies:
            self._proxies[address] = self._connect(address)
        return self._proxies[address]

    def set_addresses(self, addresses: list[str]) -> None:
        """The known controllers, the current one kept first while it is still listed."""
        fresh = list(dict.fromkeys(addresses))
        if self.current in fresh:
            fresh.remove(self.current)
            fresh.insert(0, self.current)
        if fresh:
            self.addresses = fresh
            self.current = fresh[0]

    def skip(self) -> None:
        """Make the next controller current (the current one hangs rather than refusing)."""
        order = self._order()
        if len(order) > 1:
            log.warning("controller %s does not answer; now talking to %s", self.current, order[1])
            self.current = order[1]

    def _order(self) -> list[str]:
        i = self.addresses.index(self.current) if self.current in self.addresses else 0
        return self.addresses[i:] + self.addresses[:i]

    def __getattr__(self, name: str) -> Any:
        if name not in method_shapes(ControlPlane):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            last: Unreachable | None = None
            for address in self._order():
                try:
                    result = await getattr(self._proxy(address), name)(*args, **kwargs)
                except Unreachable as e:
                    last = e
                    continue
                if address != self.current:
                    log.warning("controller %s is unreachable; now talking to %s", self.current, address)
                    self.current = address
                return result
            assert last is not None
            raise last

        return call


def connector(data_dir: Path) -> Callable[[str], ControlPlane]:
    context = identity(data_dir).client_context()

    def connect(address: str) -> ControlPlane:
        channel = Channel(f"https://{address}", context, pki.CONTROLLER_NAME)
        return cast(ControlPlane, make_proxy(ControlPlane, channel))

    return connect


def control_plane(data_dir: Path, membership: Membership) -> FailoverControlPlane:
    return FailoverControlPlane([membership.controller, *membership.controllers], connector(data_dir))


async def refresh(
    failover: FailoverControlPlane, data_dir: Path, membership: Membership, host_id: str
) -> Membership:
    """Learn the current list of controllers; keep it in ``membership.json`` when it changed."""
    listed = await cast(ControlPlane, failover).controllers(host_id)
    if not listed:
        return membership
    # The list is the database's, whichever controller answered: one no longer in it has expired
    # (services/controllers.py), so it is dropped rather than kept at the end and dialled in vain.
    failover.set_addresses(listed)
    if listed != membership.controllers:
        membership = dataclasses.replace(membership, controllers=listed)
        save(data_dir, membership)
    return membership
