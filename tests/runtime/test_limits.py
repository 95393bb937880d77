"""Resource limits enforced by the kernel through the runtime's cgroups, and read back by CgroupReader."""

from __future__ import annotations

import asyncio

from atoll.agent.runtime.cgroups import list_cgroups
from atoll.model.instance import Resources
from tests.runtime.conftest import Harness

MIB = 1 << 20


def test_oom_kill(harness: Harness) -> None:
    async def body() -> None:
        # dd's 64 MiB buffer cannot fit in 32 MiB; with no swap on the host, the OOM killer fires.
        c = await harness.run(
            ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
            resources=Resources(memory_bytes=32 * MIB),
        )
        assert c.exit_status() == (137, 9)
        # Read before the runtime deletes the cgroup, as the agent must.
        assert c.cgroup.exists()
        assert c.cgroup.oom_kills() > 0

    asyncio.run(body())


def test_memory_limit_without_oom(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.start(["sleep", "30"], resources=Resources(memory_bytes=64 * MIB))
        assert c.cgroup.memory_usage() > 0
        assert c.cgroup.oom_kills() == 0
        for _ in range(200):  # init, then its child once forked
            if len(c.cgroup.procs()) == 2:
                break
            await asyncio.sleep(0.01)
        assert c.pid in c.cgroup.procs() and len(c.cgroup.procs()) == 2
        assert list_cgroups(harness.cgroup_parent) == [c.cgroups_path]
        await harness.runtime.kill(c.id, "KILL")
        await c.wait()

    asyncio.run(body())


def test_pids_limit(harness: Harness) -> None:
    async def body() -> None:
        limit = 12
        # The subshell dies at its first failed fork; the exec needs no fork.
        script = "(for i in $(seq 40); do sleep 30 & done); echo spawned; exec sleep 30"
        c = await harness.start(["sh", "-c", script], resources=Resources(pids_limit=limit))
        for _ in range(500):
            if b"spawned" in c.output():
                break
            assert c.cgroup.pids_current() <= limit
            await asyncio.sleep(0.01)
        # The limit, not something else, stopped the forks: the kernel counted refusals. (How many
        # processes remain varies: transient ones, such as the runtime's, may have held slots.)
        assert c.cgroup.pids_refused() > 0
        assert c.cgroup.pids_current() <= limit
        assert b"can't fork" in c.output("stderr")
        await harness.runtime.kill(c.id, "KILL")
        await c.wait()

    asyncio.run(body())


def test_cpu_quota(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.start(
            ["sh", "-c", "while :; do :; done"],
            resources=Resources(cpu_quota_us=20_000, cpu_period_us=100_000),
        )
        await asyncio.sleep(0.2)
        start = c.cgroup.cpu_usage_ns()
        t0 = asyncio.get_running_loop().time()
        await asyncio.sleep(1.0)
        used = c.cgroup.cpu_usage_ns() - start
        elapsed = asyncio.get_running_loop().time() - t0
        # 0.2 CPU allowed: a busy loop gets about 20% of the wall time, far from a whole CPU.
        assert 0 < used < 0.4 * elapsed * 1e9
        await harness.runtime.kill(c.id, "KILL")
        await c.wait()

    asyncio.run(body())
