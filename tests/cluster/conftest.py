"""Cluster tests in one process: a real controller with its real mTLS cluster listener, and fake hosts
(``tests.controller.fakes.FakeAgent``) served over the real agent API, joined with real tokens."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from atoll.agent.cluster import membership as agent_membership
from atoll.agent.cluster.daemon import agent_app, control_plane
from atoll.agent.cluster.join import join
from atoll.api.app import create_app
from atoll.api.cluster_listener import cluster_app
from atoll.controller import host_connector, load_or_make_ca
from atoll.model.cluster import HostReport, HostResources
from atoll.model.ports import ControlPlane
from atoll.services import membership
from atoll.services.clusterconf import ClusterConfig
from atoll.services.context import AgentRegistry, Controller
from atoll.store.db import open_database
from atoll.wire import pki
from atoll.wire.listener import https_server
from tests.controller.fakes import FakeAgent
from tests.e2e.cloud import free_port

GIB = 1 << 30


def report(address: str, cpu: int = 4000, memory: int = 8 * GIB, name: str = "h") -> HostReport:
    return HostReport(
        address=address,
        name=name,
        runtime="fake",
        cgroup_version=2,
        capacity=HostResources(cpu_millis=cpu, memory_bytes=memory, disk_bytes=100 * GIB, pids=10000),
        used=HostResources(),
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclasses.dataclass
class Host:
    fake: FakeAgent
    data_dir: Path
    host_id: str
    control: ControlPlane
    server: uvicorn.Server


@dataclasses.dataclass
class InProcessCluster:
    ctl: Controller
    base: Path
    servers: list[uvicorn.Server] = dataclasses.field(default_factory=list)
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    async def serve(self, server: uvicorn.Server) -> None:
        task = asyncio.create_task(server._serve())
        while not server.started:
            assert not task.done(), "server did not start"
            await asyncio.sleep(0.01)
        self.servers.append(server)
        self.tasks.append(task)

    def token(self, ttl: float = 60) -> str:
        return membership.create_token(self.ctl, ttl=ttl).token

    async def add_host(self, name: str, *, token: str | None = None) -> Host:
        data_dir = self.base / name
        data_dir.mkdir()
        port = free_port()
        listen = f"127.0.0.1:{port}"
        joined = await asyncio.to_thread(join, token or self.token(), data_dir, listen=listen, name=name)
        fake = FakeAgent(host=joined.host_id)
        control = control_plane(data_dir, joined)
        fake.control = control
        server = https_server(
            agent_app(fake),
            agent_membership.identity(data_dir),
            "127.0.0.1",
            port,
            accept=lambda peer: peer == pki.CONTROLLER_CN,
        )
        await self.serve(server)
        await control.heartbeat(joined.host_id, report(listen, name=name))
        return Host(fake, data_dir, joined.host_id, control, server)

    async def close(self) -> None:
        for server in self.servers:
            server.should_exit = True
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    ca_key, ca_cert, ident = load_or_make_ca(tmp_path / "controller")
    port = free_port()
    ctl = Controller(
        sessions=open_database(f"sqlite:///{tmp_path / 'atoll.db'}"),
        agents=AgentRegistry(),
        stop_grace=1.0,
        cluster=ClusterConfig(
            ca_key_pem=ca_key,
            ca_cert_pem=ca_cert,
            address=f"127.0.0.1:{port}",
            connect=host_connector(ident),
            heartbeat_timeout=0.5,
        ),
    )
    c = InProcessCluster(ctl, tmp_path)
    await c.serve(
        https_server(
            cluster_app(ctl), ident, "127.0.0.1", port, accept=lambda _: True, require_client_cert=False
        )
    )
    yield c
    await c.close()


@pytest.fixture
async def client(cluster: InProcessCluster) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(cluster.ctl))
    async with httpx.AsyncClient(transport=transport, base_url="http://atoll") as c:
        yield c
