"""Controllers sharing one database (services/controllers.py): one CA, the list of their addresses, and
host states followed from the database. Runs on SQLite and PostgreSQL (``POSTGRES_MODULES``)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from atoll.model.errors import Conflict
from atoll.services import controllers
from atoll.services.clusterconf import ClusterConfig
from atoll.services.context import AgentRegistry, Controller
from atoll.services.control import LocalControlPlane
from atoll.store.cluster import ClusterHostRow
from atoll.store.controllers import ControllerRow
from atoll.store.models import HostRow
from atoll.wire import pki


def test_controllers_share_one_ca(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    first, second, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    controllers.share_ca(sessions, first)  # nothing anywhere: made and published
    controllers.share_ca(sessions, second)  # adopted
    assert (first / "ca.crt").read_text() == (second / "ca.crt").read_text()
    assert (first / "ca.key").read_text() == (second / "ca.key").read_text()
    assert (second / "ca.key").stat().st_mode & 0o077 == 0
    controllers.share_ca(sessions, first)  # again: unchanged
    other.mkdir()
    key, cert = pki.make_ca()
    (other / "ca.key").write_bytes(key)
    (other / "ca.crt").write_bytes(cert)
    with pytest.raises(Conflict, match="another cluster CA than the database"):
        controllers.share_ca(sessions, other)


def test_addresses_most_recently_alive_first(sessions: sessionmaker[Session]) -> None:
    controllers.register(sessions, address="10.0.0.1:7781", api_url="http://10.0.0.1:7780")
    time.sleep(0.01)
    controllers.register(sessions, address="10.0.0.2:7781", api_url="http://10.0.0.2:7780")
    assert controllers.addresses(sessions, 60) == ["10.0.0.2:7781", "10.0.0.1:7781"]
    time.sleep(0.01)
    controllers.touch(sessions, "10.0.0.1:7781", "http://10.0.0.1:7780")
    assert controllers.addresses(sessions, 60) == ["10.0.0.1:7781", "10.0.0.2:7781"]


def _age(sessions: sessionmaker[Session], address: str, seconds: float) -> None:
    with sessions.begin() as s:
        row = s.get(ControllerRow, address)
        assert row is not None
        row.seen_at = time.time() - seconds


@pytest.mark.anyio
async def test_a_controller_that_stops_renewing_expires(
    sessions: sessionmaker[Session], client: httpx.AsyncClient
) -> None:
    """Not renewed for the expiry: no longer told to agents, shown ``expired``, then deleted by the lease
    holder; a controller that was only paused comes back at its next renewal."""
    live, retired = "10.0.0.1:7781", "10.0.0.2:7781"
    controllers.register(sessions, address=live, api_url="http://10.0.0.1:7780")
    controllers.register(sessions, address=retired, api_url="http://10.0.0.2:7780")
    _age(sessions, retired, 11)  # the default expiry: 5 lease intervals of 2 s
    assert controllers.addresses(sessions, 10) == [live]
    resp = await client.get("/v1/cluster/controllers")
    assert resp.status_code == 200, resp.text
    assert [(c["address"], c["state"]) for c in resp.json()] == [(live, "alive"), (retired, "expired")]
    assert resp.json()[1]["seen_age"] >= 11
    assert controllers.expire(sessions, 10) == [retired]
    assert [c["address"] for c in (await client.get("/v1/cluster/controllers")).json()] == [live]
    assert controllers.expire(sessions, 10) == []
    controllers.touch(sessions, retired, "http://10.0.0.2:7780")  # it was only paused
    assert sorted(controllers.addresses(sessions, 10)) == [live, retired]
    assert [c.state for c in controllers.listing(sessions, 10)] == ["alive", "alive"]


@pytest.mark.anyio
async def test_the_control_plane_lists_only_live_controllers(sessions: sessionmaker[Session]) -> None:
    ca_key, ca_cert = pki.make_ca()
    ctl = Controller(
        sessions=sessions,
        agents=AgentRegistry(),
        cluster=ClusterConfig(
            ca_key_pem=ca_key,
            ca_cert_pem=ca_cert,
            address="c:1",
            connect=lambda host_id, address: SimpleNamespace(),  # type: ignore[arg-type,return-value]
            controller_expiry=3,
        ),
    )
    controllers.register(sessions, address="c:1", api_url="http://c:1")
    controllers.register(sessions, address="c:2", api_url="http://c:2")
    _age(sessions, "c:2", 4)
    assert await LocalControlPlane(ctl).controllers("h") == ["c:1"]


def test_following_host_states(sessions: sessionmaker[Session]) -> None:
    dialled: list[tuple[str, str]] = []

    def connect(host_id: str, address: str) -> Any:
        dialled.append((host_id, address))
        return SimpleNamespace(host_id=host_id, address=address)

    ca_key, ca_cert = pki.make_ca()
    ctl = Controller(
        sessions=sessions,
        agents=AgentRegistry(),
        cluster=ClusterConfig(ca_key_pem=ca_key, ca_cert_pem=ca_cert, address="c:1", connect=connect),
    )
    with sessions.begin() as s:
        for name, state in (("up", "ready"), ("gone", "down"), ("new", "joining")):
            s.add(HostRow(id=name, name=name, state=state, runtime="", cgroup_version=2, last_seen=""))
            s.flush()
            s.add(
                ClusterHostRow(
                    host_id=name,
                    address=f"{name}:1",
                    cert_serial="1",
                    joined_at="",
                    heartbeat_at=0.0,
                    drained=False,
                    cpu_millis=0,
                    memory_bytes=0,
                    disk_bytes=0,
                    pids=0,
                    used={},
                    labels={},
                )
            )
    ctl.agents.add(SimpleNamespace(host_id="gone", address="gone:1"))  # type: ignore[arg-type]
    controllers.follow_hosts(ctl)
    assert "up" in ctl.agents and "gone" not in ctl.agents and "new" not in ctl.agents
    controllers.follow_hosts(ctl)
    assert dialled == [("up", "up:1")], "a host already routed to its address is not dialled again"
    with sessions.begin() as s:
        row = s.get(ClusterHostRow, "up")
        assert row is not None
        row.address = "up:2"
    controllers.follow_hosts(ctl)
    assert dialled[-1] == ("up", "up:2")
