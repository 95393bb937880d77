"""Controller tests: the real app and services on a real SQLite database in tmp, a fake HostAgent."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
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


POSTGRES_MODULES = {
    "test_store",
    "test_api_instances",
    "test_api_networks",
    "test_api_routers",
    "test_api_secgroups",
    "test_api_volumes",
    "test_api_images",
    "test_hosts",
    "test_restart",
    "test_control_plane",
    "test_ipam",
    "test_overlay",
    "test_controllers",
}
"""Modules whose tests run on SQLite and again on PostgreSQL (a private server, tests/pgcluster.py), so
the schema and the queries of every service they touch are proven on both. ``ATOLL_TEST_DATABASE=
postgresql`` runs every controller test on PostgreSQL only; ``=sqlite`` on SQLite only."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" not in metafunc.fixturenames:
        return
    chosen = os.environ.get("ATOLL_TEST_DATABASE", "")
    if chosen:
        backends = [chosen]
    elif metafunc.module.__name__.rsplit(".", 1)[-1] in POSTGRES_MODULES:
        backends = ["sqlite", "postgresql"]
    else:
        backends = ["sqlite"]
    metafunc.parametrize("database", backends, indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh database at the current schema, of the backend this test runs on."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'atoll.db'}"


@pytest.fixture
def sessions(database: str) -> Iterator[sessionmaker[Session]]:
    factory = open_database(database)
    yield factory
    factory.kw["bind"].dispose()  # a PostgreSQL test database is dropped next: no connection may stay


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
