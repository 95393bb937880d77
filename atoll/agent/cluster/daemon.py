"""``atoll agent``: this host's agent, talking to a remote controller over mTLS.

Order of start-up: serve the agent API first (so the controller can call back as soon as it hears of
us), then heartbeat (which tells the controller where we are), then adopt and reconcile (which needs
the controller's assignments, retried until the controller answers). Instances keep running whatever
happens to this process or to the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from atoll.agent.agent import Agent, AgentConfig
from atoll.agent.cluster import capacity, failover
from atoll.agent.cluster.membership import Membership, identity, load
from atoll.heap import keep_heap_small, settle_after_startup
from atoll.model.cluster import HostReport
from atoll.model.errors import AtollError
from atoll.model.ports import ControlPlane, HostAgent
from atoll.stopping import StopSignals
from atoll.wire import pki
from atoll.wire.listener import https_server
from atoll.wire.server import rpc_routes
from atoll.wire.shapes import MethodShape

log = logging.getLogger("atoll.agent")


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def control_plane(data_dir: Path, membership: Membership) -> ControlPlane:
    """Every known controller, failing over from one to the next (``failover.py``)."""
    return cast(ControlPlane, failover.control_plane(data_dir, membership))


def agent_app(agent: HostAgent) -> Starlette:
    def resolve(_conn: HTTPConnection, _shape: MethodShape, _kwargs: dict[str, Any]) -> Any:
        return agent  # the listener admits the controller's certificate only

    return Starlette(routes=rpc_routes(HostAgent, resolve))


async def heartbeat_forever(
    agent: Agent, control: ControlPlane, membership: Membership, interval: float, name: str
) -> None:
    while True:
        report = HostReport(
            address=membership.advertise,
            name=name,
            runtime=agent.runtime_name,
            cgroup_version=agent.cgroup_version,
            capacity=capacity.capacity(agent.config.data_dir),
            used=capacity.used(agent.config.data_dir),
        )
        try:
            # Bounded: a controller that accepts the connection but never answers must not stop the
            # beats that would tell it, once it recovers, that this host is alive.
            await asyncio.wait_for(control.heartbeat(agent.host_id, report), timeout=max(5.0, 3 * interval))
            if isinstance(control, failover.FailoverControlPlane):
                membership = await asyncio.wait_for(
                    failover.refresh(control, agent.config.data_dir, membership, agent.host_id),
                    timeout=max(5.0, 3 * interval),
                )
        except (AtollError, TimeoutError) as e:
            log.warning("heartbeat failed: %s", e or "no answer")
            if isinstance(e, TimeoutError) and isinstance(control, failover.FailoverControlPlane):
                control.skip()  # a controller that accepts but never answers: try the next one
        await asyncio.sleep(interval)


async def start_when_reachable(agent: Agent, retry: float) -> None:
    while True:
        try:
            await agent.start()
            return
        except AtollError as e:
            log.warning("cannot sync with the controller yet (%s); retrying in %ss", e, retry)
            await asyncio.sleep(retry)


async def run_agent(config: AgentConfig, *, heartbeat_interval: float, name: str) -> None:
    # The first SIGINT or SIGTERM stops in order (the agent closed), a second at once (atoll/stopping.py).
    with StopSignals() as stop:
        await _run_agent(config, heartbeat_interval=heartbeat_interval, name=name, stop=stop)


async def _run_agent(config: AgentConfig, *, heartbeat_interval: float, name: str, stop: StopSignals) -> None:
    membership = load(config.data_dir)
    config = dataclasses.replace(config, host_id=membership.host_id)
    control = control_plane(config.data_dir, membership)
    agent = await Agent.open(config, control)
    host, port = split_address(membership.listen)
    server = https_server(
        agent_app(agent),
        identity(config.data_dir),
        host,
        port,
        accept=lambda peer: peer == pki.CONTROLLER_CN,
    )
    stop.on_stop(lambda: setattr(server, "should_exit", True))
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if serving.done():
        await serving  # raises: the port is taken or the certificate is unreadable
    beating = asyncio.create_task(heartbeat_forever(agent, control, membership, heartbeat_interval, name))
    starting = asyncio.create_task(start_when_reachable(agent, heartbeat_interval))
    settle_after_startup()
    heap = asyncio.create_task(keep_heap_small())
    print(
        f"Atoll agent {membership.host_id} is up: API https://{membership.advertise}, "
        f"controller {membership.controller}, runtime {agent.runtime_name}",
        flush=True,
    )
    try:
        await serving
    finally:
        for task in (beating, starting, heap):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await agent.close()
        log.info("stopped; containers keep running")
