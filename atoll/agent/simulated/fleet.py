"""A fleet of simulated hosts in one process: each joins with its own token, heartbeats on its own, and is
served behind the shared SNI listener.

Per host, exactly what `atoll join` + `atoll agent` do on the wire: `join` (the real one: CA fetched and
checked against the token's fingerprint, a key made here, a CSR, a certificate whose host id the
controller chose), then heartbeats over mTLS with that certificate every `heartbeat_interval` (spread
over the interval so a thousand hosts do not beat at once), then `assignments` to adopt what the
controller placed there. The controller dials each host back at the shared listener with the host's SNI
name. What is simulated is only what happens on the host: instances are records (see `host.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import random
import socket
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from atoll.agent.cluster.join import join
from atoll.agent.cluster.membership import identity
from atoll.agent.simulated.host import SimulatedHost
from atoll.agent.simulated.listener import HostContexts, fleet_server
from atoll.model.cluster import HostReport, HostResources
from atoll.model.errors import AtollError
from atoll.model.ports import ControlPlane
from atoll.wire import pki
from atoll.wire.client import Channel, make_proxy

log = logging.getLogger("atoll.simulated")

GIB = 1 << 30
DEFAULT_CAPACITY = HostResources(
    cpu_millis=32_000, memory_bytes=128 * GIB, disk_bytes=2000 * GIB, pids=4_194_304
)


@dataclass
class FleetStats:
    joined: int = 0
    join_seconds: list[float] = field(default_factory=list)
    heartbeats: list[float] = field(default_factory=list)
    heartbeat_errors: int = 0


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds (nearest rank), and the count."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))] * 1000, 2)

    return {"n": len(ordered), "p50_ms": rank(0.50), "p95_ms": rank(0.95), "p99_ms": rank(0.99)}


class Fleet:
    def __init__(
        self,
        base: Path,
        *,
        listen: str = "127.0.0.1",
        heartbeat_interval: float = 5.0,
        capacity: HostResources = DEFAULT_CAPACITY,
        join_concurrency: int = 2,
    ) -> None:
        self.base = base
        self.heartbeat_interval = heartbeat_interval
        self.capacity = capacity
        self.hosts: dict[str, SimulatedHost] = {}
        self.stats = FleetStats()
        self._contexts = HostContexts()
        self._join_slots = asyncio.Semaphore(join_concurrency)
        # Joins run in other processes: `join` is blocking code that loads CA stores and makes keys while
        # holding the GIL, which would stall the heartbeats and RPCs of the hosts already joined.
        self._joiners = ProcessPoolExecutor(join_concurrency, mp_context=multiprocessing.get_context("spawn"))
        self._tasks: list[asyncio.Task[None]] = []
        # Bound before any join, so every host can advertise the one address the controller dials back.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((listen, 0))
        self.address = f"{listen}:{self._socket.getsockname()[1]}"
        self._server = fleet_server(self.hosts, self._contexts, listen, self._socket.getsockname()[1])
        self._serving: asyncio.Task[None] | None = None

    def _report(self, host: SimulatedHost, name: str) -> HostReport:
        return HostReport(
            address=self.address,
            name=name,
            runtime="simulated",
            cgroup_version=2,
            capacity=host.capacity,
            used=host.used(),
        )

    async def _beat(self, host: SimulatedHost, name: str) -> None:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(
                host.control.heartbeat(host.host_id, self._report(host, name)),
                timeout=max(5.0, 3 * self.heartbeat_interval),
            )
        except (AtollError, TimeoutError) as e:
            self.stats.heartbeat_errors += 1
            log.warning("heartbeat of %s failed: %s", host.host_id, e or "no answer")
            return
        self.stats.heartbeats.append(time.perf_counter() - start)

    async def _heartbeat_forever(self, host: SimulatedHost, name: str) -> None:
        await asyncio.sleep(random.uniform(0, self.heartbeat_interval))
        while True:
            await self._beat(host, name)
            await asyncio.sleep(self.heartbeat_interval)

    async def add_host(self, token: str, name: str) -> SimulatedHost:
        """Join (in a thread: `join` is the blocking one of `atoll join`), then first heartbeat and adopt."""
        data_dir = self.base / name
        data_dir.mkdir(parents=True, exist_ok=True)
        async with self._join_slots:
            start = time.perf_counter()
            membership = await asyncio.get_running_loop().run_in_executor(
                self._joiners, functools.partial(join, token, data_dir, listen=self.address, name=name)
            )
            self.stats.join_seconds.append(time.perf_counter() - start)
        ident = identity(data_dir)
        channel = Channel(f"https://{membership.controller}", ident.client_context(), pki.CONTROLLER_NAME)
        control = cast(ControlPlane, make_proxy(ControlPlane, channel))
        host = SimulatedHost(membership.host_id, self.capacity, control)
        self._contexts.add(membership.host_id, ident)
        self.hosts[host.host_id] = host
        self.stats.joined += 1
        if self._serving is None:
            await self._start_serving()
        await self._beat(host, name)
        await self._adopt(host)
        self._tasks.append(asyncio.create_task(self._heartbeat_forever(host, name)))
        return host

    async def _adopt(self, host: SimulatedHost) -> None:
        """Retried until the controller answers, as the real agent's start-up sync is."""
        while True:
            try:
                await host.adopt()
                return
            except AtollError as e:
                log.warning("host %s cannot sync with the controller yet: %s", host.host_id, e)
                await asyncio.sleep(self.heartbeat_interval)

    async def _start_serving(self) -> None:
        self._serving = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._serving.done():
                await self._serving  # raises why it could not start
            await asyncio.sleep(0.01)

    async def add_hosts(self, tokens: list[str], prefix: str = "sim") -> list[SimulatedHost]:
        # The first host alone: the listener needs one certificate before it can start.
        if not tokens:
            return []
        first = await self.add_host(tokens[0], f"{prefix}-0000")
        rest = await asyncio.gather(
            *(self.add_host(t, f"{prefix}-{i:04}") for i, t in enumerate(tokens[1:], 1))
        )
        return [first, *rest]

    def summary(self) -> dict[str, object]:
        calls: dict[str, int] = {}
        for host in self.hosts.values():
            for name, n in host.counters.calls.items():
                calls[name] = calls.get(name, 0) + n
        return {
            "hosts": len(self.hosts),
            "instances": sum(len(h.specs) for h in self.hosts.values()),
            "running": sum(len(h.running) for h in self.hosts.values()),
            "join": percentiles(self.stats.join_seconds),
            "heartbeat": percentiles(self.stats.heartbeats),
            "heartbeat_errors": self.stats.heartbeat_errors,
            "calls": calls,
            # Raw, so the figures of several fleet processes can be merged (bench/cluster_load.py).
            "join_samples": [round(x, 4) for x in self.stats.join_seconds],
            "heartbeat_samples": [round(x, 4) for x in self.stats.heartbeats],
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Forced: idle keep-alive connections from a controller that is gone must not hold the shutdown.
        self._server.should_exit = self._server.force_exit = True
        if self._serving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serving, 10)
        for host in self.hosts.values():
            channel = getattr(host.control, "channel", None)
            if isinstance(channel, Channel):
                await channel.aclose()
        self._socket.close()
        self._joiners.shutdown(wait=False, cancel_futures=True)
