"""Controller tests: the real app and services on a real SQLite database in tmp, a fake HostAgent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from atoll.api.app import create_app
from atoll.services.context import AgentRegistry, Controller
from atoll.services.control import LocalControlPlane
from atoll.services.hosts import register_host
from atoll.store.db import open_database

from .fakes import FakeAgent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    return open_database(f"sqlite:///{tmp_path / 'atoll.db'}")


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def ctl(sessions: sessionmaker[Session], agent: FakeAgent) -> Controller:
    controller = Controller(sessions=sessions, agents=AgentRegistry(), stop_grace=1.0)
    register_host(controller, agent, name="test-host", runtime="fake", cgroup_version=2)
    agent.control = LocalControlPlane(controller)
    return controller


@pytest.fixture
async def client(ctl: Controller) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctl))
    async with httpx.AsyncClient(transport=transport, base_url="http://atoll") as c:
        yield c
