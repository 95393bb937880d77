"""The removal half of ``HostNetwork`` (``dataplane``): an instance's network taken down at once, or
in the background (``release(defer=True)``), and bridges left without ports kept a moment
(``LINGER``) for the next instance. A base class of ``HostNetwork``, whose state and kernel calls it
uses (declared here, defined there); everything runs under its lock, like the rest of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

from atoll.agent.net import netlink
from atoll.agent.net.names import Names
from atoll.agent.net.wiring import Bridge
from atoll.model.network import PortSpec
from atoll.model.publish import PublishedPort

log = logging.getLogger(__name__)

LINGER = 1.0
"""Seconds a bridge stays after a deferred removal took its last port: `docker run --rm` after
`docker run --rm` on an otherwise empty network would make and delete the bridge (and reload our
tables whole, as they go with the last bridge) every time."""


class DeferredRemoval:
    names: Names
    _lock: asyncio.Lock
    _attached: dict[str, list[PortSpec]]
    _published: dict[str, list[PublishedPort]]
    _released: set[str]
    _teardowns: dict[str, asyncio.Task[None]]
    """Deferred removals under way, by instance (see ``release``)."""
    _idle: dict[str, Bridge]
    """Bridges whose last port a deferred removal took, kept for ``LINGER`` seconds (see ``release``)."""
    _expiry: asyncio.Task[None] | None
    _hurry: asyncio.Event
    """Set when the agent closes: idle bridges go at once, as no next instance is coming."""

    # HostNetwork's (in the host namespace, worker threads)
    def _in_host(self, fn: Callable[[], None]) -> None:
        raise NotImplementedError

    def _unwire(self, instance_id: str, ports: list[PortSpec]) -> None:
        raise NotImplementedError

    def _desired_bridges(self, desired: Mapping[str, list[PortSpec]]) -> dict[str, Bridge]:
        raise NotImplementedError

    def _apply_rules(self, bridges: Mapping[str, Bridge], desired: Mapping[str, list[PortSpec]]) -> None:
        raise NotImplementedError

    def _sync_fast(self, desired: Mapping[str, list[PortSpec]]) -> None:
        raise NotImplementedError

    async def release(self, instance_id: str, ports: Iterable[PortSpec] = (), *, defer: bool = False) -> None:
        """Remove an instance's veths and namespace, and bridges no other port needs. Idempotent.

        With ``defer``, the kernel work (deleting links waits for the kernel's RCU grace periods, tens
        of ms) is left to a background task (``settle`` waits for it): when this returns the instance
        is gone from the desired state, so its address may be given to a new instance at once. That is
        safe with the old veth still there: the next rule change (a new port's) is computed against the
        rules last applied, so it removes the old port's elements and adds the new one's in one
        transaction; the new port has its own veth, its MAC pinned to it on the bridge; and the old
        veth is taken off the bridge's forwarding at once (its namespace would still answer ARP). If
        the agent dies first, its start-up ``sync`` removes what is left (whatever is ours and not
        wanted).
        Published ports are released at once (their host ports and addresses are shared). A bridge
        left without ports stays ``LINGER`` seconds, in case the next instance comes (``settle``
        waits for that too)."""
        async with self._lock:
            known = self._attached.pop(instance_id, None)
            published = self._published.pop(instance_id, None)
            self._released.add(instance_id)
            gone = list(known if known is not None else ports)
            if defer and not published:
                attached = dict(self._attached)
                await asyncio.to_thread(self._in_host, lambda: self._isolate(gone, attached))
                task = asyncio.create_task(self._teardown(instance_id, gone))
                self._teardowns[instance_id] = task
                task.add_done_callback(lambda done: self._forget_teardown(instance_id, done))
                return
            await asyncio.to_thread(self._in_host, lambda: self._unwire(instance_id, gone))

    def _isolate(self, ports: list[PortSpec], attached: Mapping[str, list[PortSpec]]) -> None:
        """Until its deletion, a released port's veth forwards nothing: its namespace, though without
        processes, still answers ARP and ping for an address that may now be another instance's. The
        fast path forgets it first, or established flows would go on past the bridge."""
        self._sync_fast(attached)
        with netlink.netlink() as ipr:
            for port in ports:
                netlink.disable_port(ipr, self.names.veth(port.id))

    async def _teardown(self, instance_id: str, ports: list[PortSpec]) -> None:
        async with self._lock:
            if instance_id in self._attached:
                return  # wired again since (the same id): nothing of it is to go
            wanted = self._desired_bridges(self._attached)
            for port in ports:
                name = self.names.bridge(port.network_id)
                if name not in wanted:
                    self._idle[name] = Bridge(port.network_id, port.mtu)
            try:
                await asyncio.to_thread(self._in_host, lambda: self._unwire(instance_id, ports))
            except Exception:
                log.exception("could not remove the network of %s; the next sync will", instance_id)
            if self._idle:
                if self._expiry is not None:
                    self._expiry.cancel()
                self._expiry = asyncio.create_task(self._expire(LINGER))

    async def _expire(self, after: float) -> None:
        """Delete the idle bridges that no port has taken since (and, with none left, our tables)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), after)
        async with self._lock:
            idle, self._idle = self._idle, {}
            if not idle:
                return
            attached = dict(self._attached)
            try:
                await asyncio.to_thread(self._in_host, lambda: self._drop_idle(idle, attached))
            except Exception:
                log.exception("could not remove idle bridges; the next sync will")

    def _drop_idle(self, idle: Mapping[str, Bridge], attached: Mapping[str, list[PortSpec]]) -> None:
        wanted = self._desired_bridges(attached)
        with netlink.netlink() as ipr:
            for name, bridge in idle.items():
                if name not in wanted:
                    netlink.delete(ipr, name, owner=bridge.network_id)
        self._apply_rules(wanted, attached)

    def _forget_teardown(self, instance_id: str, task: asyncio.Task[None]) -> None:
        if self._teardowns.get(instance_id) is task:
            del self._teardowns[instance_id]

    def hurry(self) -> None:
        """The agent is closing: idle bridges are deleted now rather than ``LINGER`` seconds after their
        last port went, so that ``settle`` returns as soon as the removals under way are done."""
        self._hurry.set()

    async def settle(self) -> None:
        """Wait for the deferred removals under way (see ``release``), idle bridges included."""
        while self._teardowns or (self._expiry is not None and not self._expiry.done()):
            pending = [*self._teardowns.values(), *([self._expiry] if self._expiry is not None else [])]
            await asyncio.gather(*pending, return_exceptions=True)
