"""Resource limits are enforced by the kernel, not just recorded."""

from __future__ import annotations

import time
from pathlib import Path

from atoll.schemas import ExecStart, ResourcesWire
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import run

MiB = 1024 * 1024


def test_memory_limit_kills_with_137_and_reports_oom(cloud: Cloud) -> None:
    api = cloud.api()
    # dd's 128 MiB buffer is filled from /dev/zero, so every page of it is really used.
    ref = run(
        api,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=128M",
        "count=1",
        resources=ResourcesWire(memory=32 * MiB, memory_swap=32 * MiB),
    )
    result = api.wait_instance(ref)
    assert (result.exit_code, result.oom_killed) == (137, True)
    inst = api.inspect_instance(ref)
    assert inst.oom_killed, inst
    assert inst.resources.memory == 32 * MiB


def test_memory_within_the_limit_runs(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(
        api,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=8M",
        "count=1",
        resources=ResourcesWire(memory=64 * MiB),
    )
    assert api.wait_instance(ref).exit_code == 0
    assert not api.inspect_instance(ref).oom_killed


def _pids_file(cloud: Cloud, ref: str, name: str) -> Path:
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        path = base / cloud.cgroup_parent / ref / name
        if path.exists():
            return path
    raise AssertionError(f"no pids cgroup for {ref}")


def test_fork_bomb_stops_at_the_pids_limit(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sleep", "300", resources=ResourcesWire(pids_limit=16))
    bomb = "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; wait"
    with api.exec(ref, ExecStart(args=["sh", "-c", bomb])) as session:
        errors = b"".join(d for s, d in session.output() if s == 2)
        assert session.wait() != 0  # the shell itself could not fork any more
    assert b"fork" in errors
    events = _pids_file(cloud, ref, "pids.events").read_text().split()
    assert events[0] == "max" and int(events[1]) > 0  # the kernel refused forks
    assert int(_pids_file(cloud, ref, "pids.current").read_text()) <= 16
    api.remove_instance(ref, force=True)


def _cpu_usage_seconds(cloud: Cloud, ref: str) -> float:
    v1 = Path("/sys/fs/cgroup/cpuacct") / cloud.cgroup_parent / ref / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text()) / 1e9
    stat = (Path("/sys/fs/cgroup") / cloud.cgroup_parent / ref / "cpu.stat").read_text()
    return int(stat.split("usage_usec")[1].split()[0]) / 1e6


def test_cpu_quota_holds_a_busy_loop_down(cloud: Cloud) -> None:
    api = cloud.api()
    ref = run(api, "sh", "-c", "while :; do :; done", resources=ResourcesWire(cpus=0.2))
    time.sleep(0.3)
    used0, t0 = _cpu_usage_seconds(cloud, ref), time.monotonic()
    time.sleep(1.5)
    used = _cpu_usage_seconds(cloud, ref) - used0
    wall = time.monotonic() - t0
    api.remove_instance(ref, force=True)
    assert used < 0.35 * wall, (used, wall)  # a quota of 0.2 CPU; an unlimited loop would use ~1.0
    assert used > 0.05 * wall, (used, wall)  # and it did run
