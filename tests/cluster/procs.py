"""A real cluster on this machine: ``atoll serve`` and agents started with ``atoll join``, each a separate
process. Each agent is a host of its own: data dir, run dir, cgroup parent, link prefix and nft table
(from ``tests.e2e.cloud.Cloud``, whose teardown also removes what a host's dataplane left)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from atoll.client import AtollAPI
from atoll.host_schemas import HostDetail
from tests.e2e.cloud import ATOLL, Cloud, free_port

HEARTBEAT_INTERVAL = 0.3
HEARTBEAT_TIMEOUT = 2.0


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=out, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class AgentProc:
    name: str
    host: Cloud
    """Only for its per-host names, directories and cleanup; its own `atoll up` is never started."""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    host_id: str = ""

    def env(self, controller_env: dict[str, str]) -> dict[str, str]:
        return {
            **self.host.env,
            "ATOLL_URL": controller_env["ATOLL_URL"],
            "ATOLL_HOST_NAME": self.name,
            "ATOLL_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
        }

    @property
    def log(self) -> Path:
        return self.host.base / "agent.log"

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill9(self) -> None:
        _stop(self.proc, signal.SIGKILL)
        self.proc = None


@dataclass
class MultiHost:
    base: Path
    api_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    controller: subprocess.Popen[bytes] | None = None
    agents: list[AgentProc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ATOLL_URL": self.url,
            "ATOLL_DATA_DIR": str(self.base / "controller"),
            "ATOLL_API_PORT": str(self.api_port),
            "ATOLL_CLUSTER_HOST": "127.0.0.1",
            "ATOLL_CLUSTER_PORT": str(self.cluster_port),
            "ATOLL_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "TMPDIR": str(self.base),
        }

    @property
    def controller_log(self) -> Path:
        return self.base / "controller.log"

    def api(self) -> AtollAPI:
        return AtollAPI(self.url)

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ATOLL, *args], env=env or self.env, capture_output=True, text=True, timeout=timeout
        )

    def start_controller(self) -> None:
        self.controller = _spawn([ATOLL, "serve"], self.env, self.controller_log)
        self._wait(
            lambda: httpx.get(f"{self.url}/v1/cluster/hosts", timeout=1).status_code == 200, "controller"
        )

    def _wait(self, ready: object, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, OSError):
                if ready():  # type: ignore[operator]
                    return
            time.sleep(0.05)
        raise AssertionError(f"{what} not ready in {timeout} s: {self.controller_log.read_text()[-3000:]}")

    def host(self, host_id: str) -> HostDetail:
        return self.api().cluster_host(host_id)

    def wait_state(self, agent: AgentProc, state: str, timeout: float = 60) -> None:
        self._wait(lambda: self.host(agent.host_id).state == state, f"{agent.name} {state}", timeout)

    def add_agent(self, name: str) -> AgentProc:
        host_base = self.base / name
        host_base.mkdir()
        agent = AgentProc(name=name, host=Cloud(base=host_base))
        agent.host.tmp.mkdir()
        self.agents.append(agent)
        self._join(agent)
        return agent

    def _agent_command(self, agent: AgentProc, *args: str) -> list[str]:
        """How an agent's `atoll` runs (a subclass puts it in a namespace of its own)."""
        return [ATOLL, *args]

    def _agent_env(self, agent: AgentProc) -> dict[str, str]:
        return agent.env(self.env)

    def _join(self, agent: AgentProc) -> None:
        """``atoll join`` with a fresh token; returns once the host is ready and holds the starter image."""
        token = self.api().create_join_token(60).token
        agent.proc = _spawn(
            self._agent_command(agent, "join", token, "--listen", agent.listen),
            self._agent_env(agent),
            agent.log,
        )
        self._wait(lambda: (agent.host.data_dir / "host-id").exists(), f"{agent.name} join")
        agent.host_id = (agent.host.data_dir / "host-id").read_text().strip()
        self.wait_state(agent, "ready")
        self._wait(
            lambda: f"host {agent.host_id} holds the starter image" in self.controller_log.read_text(),
            f"{agent.name} starter image",
        )

    def restart_agent(self, agent: AgentProc) -> None:
        assert agent.proc is None
        agent.proc = _spawn(self._agent_command(agent, "agent"), self._agent_env(agent), agent.log)

    def _stop_all(self) -> None:
        """Remove every instance through the API (while the controller runs), then stop the processes."""
        if self.controller is not None and self.controller.poll() is None:
            api = self.api()
            for inst in api.instances(all=True):
                with contextlib.suppress(Exception):
                    api.remove_instance(inst.id, force=True)
        for agent in self.agents:
            _stop(agent.proc)
        _stop(self.controller)

    def teardown(self) -> None:
        self._stop_all()
        for agent in self.agents:
            agent.host.teardown()


Cluster = TypeVar("Cluster", bound=MultiHost)


def started(cluster: Cluster, *hosts: str) -> Iterator[Cluster]:
    """For a module fixture: ``cluster``'s controller, then one joined agent per name in ``hosts``; torn
    down (instances, processes, each host's kernel objects) when the module is done, or if starting
    fails half-way. Use as ``yield from started(NetnsCluster(base=...), "alpha", "beta")``."""
    try:
        cluster.start_controller()
        for name in hosts:
            cluster.add_agent(name)
        yield cluster
    finally:
        cluster.teardown()
