"""SIGTERM stops `atoll agent` and `atoll serve` in order (atoll/stopping.py): each runs its closing
code and exits 0, and the containers keep running through both."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from atoll.schemas import InstanceCreate

from .procs import MultiHost, started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiHost]:
    yield from started(MultiHost(base=tmp_path_factory.mktemp("atoll-test-stop")), "alpha")


@pytest.fixture
def restarted(cluster: MultiHost) -> Iterator[MultiHost]:
    """The cluster, with what the test left stopped started again: its teardown removes the instances
    through the agents (a failed assertion would otherwise leave a container running)."""
    yield cluster
    if cluster.controller is None:
        cluster.start_controller()
    for agent in cluster.agents:
        if agent.proc is None or agent.proc.poll() is not None:
            agent.proc = None
            cluster.restart_agent(agent)
            cluster.wait_state(agent, "ready")


def terminate(proc: subprocess.Popen[bytes] | None) -> int:
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("did not stop within 30 s of SIGTERM") from None


def test_agent_and_controller_stop_in_order_and_containers_stay(restarted: MultiHost) -> None:
    cluster = restarted
    (alpha,) = cluster.agents
    api = cluster.api()
    inst = api.create_instance(InstanceCreate(image="busybox", name="stayer", command=["sleep", "600"]))
    api.start_instance(inst.id)
    pid = api.inspect_instance(inst.id).pid
    assert pid > 0

    code = terminate(alpha.proc)
    alpha.proc = None
    assert code == 0, alpha.log.read_text()[-3000:]
    assert "stopped; containers keep running" in alpha.log.read_text()
    assert os.path.exists(f"/proc/{pid}"), "a container died with its agent's orderly stop"
    cluster.restart_agent(alpha)
    cluster.wait_state(alpha, "ready")
    assert api.inspect_instance(inst.id).pid == pid

    code = terminate(cluster.controller)
    cluster.controller = None
    assert code == 0, cluster.controller_log.read_text()[-3000:]
    assert cluster.controller_log.read_text().rstrip().endswith("INFO atoll: stopped")
    assert os.path.exists(f"/proc/{pid}"), "a container died with the controller's orderly stop"
    cluster.start_controller()
    cluster.wait_state(alpha, "ready")
    assert api.inspect_instance(inst.id).pid == pid
    api.remove_instance(inst.id, force=True)
