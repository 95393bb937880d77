"""Workloads outlive the control plane: kill -9 of `atoll up` (controller and agent) stops nothing."""

from __future__ import annotations

import time
from pathlib import Path

from atoll.schemas import RestartPolicyWire
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import output, run, wait_for


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for PID 1 to reap it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_kill_9_leaves_containers_running_and_exits_are_recorded(fresh_cloud: Cloud) -> None:
    cloud = fresh_cloud
    api = cloud.api()
    long = run(api, "sh", "-c", "echo before; sleep 300")
    short = run(api, "sh", "-c", "echo early; sleep 2; echo late >&2; exit 42")
    crashy = run(
        api, "sh", "-c", "sleep 2; exit 1", restart_policy=RestartPolicyWire(name="on-failure", max_retries=1)
    )
    time.sleep(0.3)
    long_pid = api.inspect_instance(long).pid
    assert alive(long_pid)

    cloud.kill9()
    time.sleep(3)  # `short` and `crashy` end while nothing of Atoll is running
    assert alive(long_pid), "a container died with the control plane"

    cloud.start()
    api = cloud.api()
    inst = api.inspect_instance(long)
    assert (inst.status, inst.pid) == ("running", long_pid)  # adopted, not restarted
    ended = api.inspect_instance(short)
    assert (ended.status, ended.exit_code) == ("exited", 42)
    assert output(api, short) == {1: b"early\n", 2: b"late\n"}  # written while nobody watched
    stamped = [line.split(b" ", 1)[0] for line in output(api, short, timestamps=True)[2].splitlines()]
    assert stamped and stamped[0].startswith(b"20")
    # The restart policy is applied to an exit that happened while the agent was down.
    wait_for(lambda: api.inspect_instance(crashy).restart_count == 1)
    wait_for(lambda: api.inspect_instance(crashy).status == "exited", timeout=10)

    # The adopted container is still fully managed: logs, exec-free stop and exit code.
    assert output(api, long)[1] == b"before\n"
    assert api.stop_instance(long, timeout=1).exit_code == 143  # SIGTERM, forwarded by atoll-init
    assert not alive(long_pid)


def test_graceful_restart_of_the_control_plane_keeps_state(fresh_cloud: Cloud) -> None:
    cloud = fresh_cloud
    api = cloud.api()
    ref = run(api, "sleep", "300", name="keeper")
    cloud.stop()
    cloud.start()
    api = cloud.api()
    inst = api.inspect_instance("keeper")
    assert inst.id == ref and inst.status == "running"
    api.remove_instance(ref, force=True)
