"""Two ``atoll serve`` processes on one private PostgreSQL database, two real agents joined through the
first. Both controllers serve the API; the first holds the lease. ``kill -9`` of it: the agents fail over
to the second, which takes the lease (its loops mark a silent host down) and keeps serving the API."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from atoll.client import AtollAPI
from atoll.schemas import InstanceCreate
from tests.e2e.cloud import ATOLL, free_port
from tests.pgcluster import PrivateServer

from .procs import AgentProc, MultiHost, _spawn, _stop

LEASE_INTERVAL = 0.5
HEARTBEAT_TIMEOUT = 6.0
"""Longer than procs.py's 2 s: under a load average of 15-20 heartbeats 0.3 s apart arrive more than 2 s
late, hosts flap down and up, and the checks below would judge the load instead of the fail-over."""
LEADER = "lease: this controller runs the background loops"


@dataclass
class OnPostgres(MultiHost):
    """``MultiHost`` whose controller keeps its state in PostgreSQL, with a second controller beside it
    (its own data dir and ports, the same database)."""

    database: str = ""
    api_port2: int = field(default_factory=free_port)
    cluster_port2: int = field(default_factory=free_port)
    second: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            **super().env,
            "ATOLL_DATABASE_URL": self.database,
            "ATOLL_LEASE_INTERVAL": str(LEASE_INTERVAL),
            "ATOLL_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        }

    @property
    def env2(self) -> dict[str, str]:
        return {
            **self.env,
            "ATOLL_URL": self.url2,
            "ATOLL_DATA_DIR": str(self.base / "controller2"),
            "ATOLL_API_PORT": str(self.api_port2),
            "ATOLL_CLUSTER_PORT": str(self.cluster_port2),
        }

    @property
    def url2(self) -> str:
        return f"http://127.0.0.1:{self.api_port2}"

    @property
    def log2(self) -> Path:
        return self.base / "controller2.log"

    def start_second(self) -> None:
        self.second = _spawn([ATOLL, "serve"], self.env2, self.log2)
        _wait(lambda: httpx.get(f"{self.url2}/v1/cluster/hosts", timeout=1).status_code == 200, "second")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, pg_server: PrivateServer) -> Iterator[OnPostgres]:
    name = pg_server.create_database()
    c = OnPostgres(base=tmp_path_factory.mktemp("atoll-test-2ctl"), database=pg_server.url(name))
    try:
        c.start_controller()
        _wait(lambda: LEADER in c.controller_log.read_text(), "the first controller's lease")
        c.start_second()
        c.add_agent("alpha")
        c.add_agent("beta")
        yield c
    finally:
        with contextlib.suppress(Exception):
            api = AtollAPI(c.url2)
            for inst in api.instances(all=True):
                api.remove_instance(inst.id, force=True)
        _stop(c.second)
        c.teardown()
        pg_server.drop_database(name)


def _wait(ready: object, what: str, timeout: float = 60) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if ready():  # type: ignore[operator]
                return time.monotonic() - start
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def _run(api: AtollAPI, name: str) -> str:
    inst = api.create_instance(InstanceCreate(image="busybox", name=name, command=["sleep", "600"]))
    api.start_instance(inst.id)
    return inst.id


def _controllers_known(agent: AgentProc) -> list[str]:
    membership = json.loads((agent.host.data_dir / "cluster" / "membership.json").read_text())
    return list(membership.get("controllers", []))


def test_two_controllers_survive_the_loss_of_one(pair: OnPostgres) -> None:
    c = pair
    alpha, beta = c.agents
    first, second = AtollAPI(c.url), AtollAPI(c.url2)
    # Exactly one controller runs the loops; both serve the API and see the same hosts.
    assert LEADER not in c.log2.read_text()
    assert sorted(h.name for h in second.cluster_hosts()) == ["alpha", "beta"]
    # Agents learnt both controllers' addresses from their heartbeats (kept for their next start).
    addresses = {f"127.0.0.1:{c.cluster_port}", f"127.0.0.1:{c.cluster_port2}"}
    _wait(lambda: set(_controllers_known(alpha)) == addresses, "alpha learns both controllers")
    assert {(c.address, c.state) for c in second.controllers()} == {(a, "alive") for a in addresses}
    # The second controller places and starts instances on hosts that joined through the first.
    second.drain_host(beta.host_id)  # beta is killed later: keep instances off it
    a = _run(second, "via-second")
    assert second.inspect_instance(a).host == alpha.host_id
    assert first.inspect_instance(a).status == "running"

    # kill -9 of the lease holder, the controller the agents talk to.
    assert c.controller is not None
    killed = time.monotonic()
    c.controller.send_signal(9)
    c.controller.wait(10)
    _wait(lambda: LEADER in c.log2.read_text(), "the second controller takes the lease", 30)
    print(f"lease take-over after kill -9: {time.monotonic() - killed:.2f} s (interval {LEASE_INTERVAL} s)")

    # Agents fail over: their heartbeats reach the survivor (the only controller left to record them).
    def beating() -> bool:
        hosts = second.cluster_hosts()
        return all(h.heartbeat_age is not None and h.heartbeat_age < 1.0 for h in hosts)

    time.sleep(2)
    _wait(beating, "heartbeats reach the survivor", 30)
    # The dead controller stops renewing its row: it expires (5 lease intervals), the survivor's lease
    # loop deletes it, and the agents drop it from their lists.
    dead, survivor = f"127.0.0.1:{c.cluster_port}", f"127.0.0.1:{c.cluster_port2}"
    gone = _wait(lambda: [x.address for x in second.controllers()] == [survivor], "the dead one expires", 30)
    print(f"dead controller expired and deleted {gone:.2f} s after the agents failed over")
    listed = c.cli("controller", "ls", env=c.env2)
    assert listed.returncode == 0 and survivor in listed.stdout, listed.stdout + listed.stderr
    assert dead not in listed.stdout and "alive" in listed.stdout
    for agent in (alpha, beta):
        _wait(lambda agent=agent: _controllers_known(agent) == [survivor], f"{agent.name} drops it", 30)  # type: ignore[misc]
    assert {h.state for h in second.cluster_hosts()} <= {"ready", "draining"}
    # The API of the survivor keeps serving: create, start, list, exec.
    b = _run(second, "after-failover")
    assert {i.name for i in second.instances()} == {"via-second", "after-failover"}
    assert second.inspect_instance(b).status == "running"
    out = c.cli("exec", b, "echo", "still here", env=c.env2)
    assert out.returncode == 0 and out.stdout == "still here\n", out.stderr
    # Down-host detection moved with the lease: a silent agent is marked down by the survivor.
    beta.kill9()
    down = _wait(lambda: second.cluster_host(beta.host_id).state == "down", "beta down", 30)
    print(f"beta marked down {down:.2f} s after kill -9 (timeout {HEARTBEAT_TIMEOUT} s)")
    _wait(lambda: second.cluster_host(alpha.host_id).state == "ready", "alpha still ready", 10)
    assert time.monotonic() - killed < 120
