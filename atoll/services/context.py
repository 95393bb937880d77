"""What every service call gets: the session factory, the connected host agents and in-process
coordination (events that wake waiters, per-instance locks, starts in flight).

The coordination state is in memory on purpose: one controller process owns it, and the control plane
that agents report to (in-process today, over HTTP tomorrow) runs in that same process. DB calls are made
directly on the event loop: each is a short SQLite transaction, and running them on the loop means no two
of them interleave inside one process.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy.orm import Session, sessionmaker

from atoll.model.errors import Conflict, NotFound
from atoll.model.ports import HostAgent
from atoll.schemas import WaitResult
from atoll.services.activity import ActivityLog
from atoll.services.addrpools import DEFAULT_POOLS, AddressPool, parse_pools
from atoll.services.attachnames import AttachNames
from atoll.services.clusterconf import ClusterConfig
from atoll.services.liveness import Liveness, MemberCache
from atoll.services.mounts import BindPolicy
from atoll.services.secrets import SecretBox


class AgentRegistry:
    """host_id -> HostAgent of the hosts connected right now."""

    def __init__(self, agents: list[HostAgent] | None = None) -> None:
        self._agents: dict[str, HostAgent] = {}
        for agent in agents or []:
            self.add(agent)

    def add(self, agent: HostAgent) -> None:
        self._agents[agent.host_id] = agent

    def discard(self, host_id: str) -> None:
        self._agents.pop(host_id, None)

    def get(self, host_id: str) -> HostAgent:
        agent = self._agents.get(host_id)
        if agent is None:
            raise Conflict(f"host {host_id} is not connected")
        return agent

    def pick(self) -> HostAgent:
        """The host for new work. One host today; the scheduler decides once there are several."""
        for agent in self._agents.values():
            return agent
        raise NotFound("no hosts: no agent is connected to this controller")

    def all(self) -> list[HostAgent]:
        return list(self._agents.values())

    def __contains__(self, host_id: str) -> bool:
        return host_id in self._agents


class EventKind(StrEnum):
    CHANGED = "changed"
    EXITED = "exited"
    REMOVED = "removed"


@dataclass(frozen=True)
class InstanceEvent:
    instance_id: str
    kind: EventKind
    exit: WaitResult | None = None
    """For EXITED: how this run ended. For REMOVED: how the last run ended, if it ran."""


class Subscription:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[InstanceEvent] = asyncio.Queue()

    async def next(self) -> InstanceEvent:
        return await self.queue.get()


class InstanceEvents:
    """Wakes waiters when an instance changes. Subscribe *before* reading state, so no change is lost."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    @asynccontextmanager
    async def subscribe(self, instance_id: str) -> AsyncIterator[Subscription]:
        sub = Subscription()
        self._subs.setdefault(instance_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(instance_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[instance_id]

    def publish_changed(self, instance_id: str) -> None:
        self.publish(InstanceEvent(instance_id, EventKind.CHANGED))

    def publish(self, event: InstanceEvent) -> None:
        for sub in list(self._subs.get(event.instance_id, ())):
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is sub.loop:
                sub.queue.put_nowait(event)
            else:
                sub.loop.call_soon_threadsafe(sub.queue.put_nowait, event)


class InstanceLocks:
    """Serializes user operations on one instance (start, stop, kill, remove). Reports from agents never
    take these locks, so an agent may report while a user operation awaits it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, instance_id: str) -> asyncio.Lock:
        lock = self._locks.get(instance_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[instance_id] = lock
        return lock


class StartsInFlight:
    """Instances whose start is awaiting the agent. An exit reported in that window belongs to the run
    being started; the start must then not mark the instance running afterwards."""

    def __init__(self) -> None:
        self._exited: dict[str, bool] = {}

    def begin(self, instance_id: str) -> None:
        self._exited[instance_id] = False

    def end(self, instance_id: str) -> bool:
        """Returns whether the run exited before its start returned."""
        return self._exited.pop(instance_id, False)

    def pending(self, instance_id: str) -> bool:
        """A start is in flight and no exit was recorded for it yet."""
        return self._exited.get(instance_id) is False

    def mark_exited(self, instance_id: str) -> None:
        if instance_id in self._exited:
            self._exited[instance_id] = True


@dataclass
class Controller:
    sessions: sessionmaker[Session]
    agents: AgentRegistry = field(default_factory=AgentRegistry)
    events: InstanceEvents = field(default_factory=InstanceEvents)
    locks: InstanceLocks = field(default_factory=InstanceLocks)
    starts: StartsInFlight = field(default_factory=StartsInFlight)
    removing: set[str] = field(default_factory=set)
    """Instances a user is removing: their exit must not trigger an auto-remove of its own."""
    restarting: set[str] = field(default_factory=set)
    """Instances being restarted: the stop's exit must not auto-remove a ``--rm`` one (as in Docker)."""
    activity: ActivityLog = field(default_factory=ActivityLog)
    """What happened, for ``docker events``."""
    stop_grace: float = 5.0
    """How long a stop waits, after the agent returned, for the agent's exit report to arrive."""
    bind_mounts: BindPolicy = field(default_factory=BindPolicy)
    """Which host paths instances may bind-mount (``ATOLL_BIND_MOUNTS``); any, on a single-node cloud."""
    address_pools: tuple[AddressPool, ...] = field(default_factory=lambda: parse_pools(DEFAULT_POOLS))
    """Where subnets asked for as ``auto`` get their CIDR (see ``addrpools``)."""
    cluster: ClusterConfig | None = None
    """Set by ``atoll serve``: hosts join over the network (see services/membership.py)."""
    secrets: SecretBox | None = None
    """Key for registry passwords at rest (``secrets.py``); unset: a key file beside the SQLite file."""
    members: MemberCache = field(default_factory=MemberCache)
    """Hosts known to be cluster members, so an RPC skips the membership query (``liveness.py``)."""
    liveness: Liveness = field(default_factory=Liveness)
    """Heartbeats that changed nothing, written in batches (``liveness.py``)."""
    attach_names: AttachNames = field(default_factory=AttachNames)
    """Network and volume names by id, for the activity entries of every run (``attachnames.py``)."""
