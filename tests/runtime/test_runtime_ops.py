"""Pause, resume, live update and kill --all through the runtime wrapper, under both runtimes (crun on a
cgroup v1 host does these through the agent's own cgroups, owncgroups.py)."""

from __future__ import annotations

import asyncio

from atoll.agent.runtime.cgroups import detect_host_cgroups, hierarchies
from atoll.agent.runtime.oci import build_resources
from atoll.model.instance import Resources
from tests.runtime.conftest import Harness


def _frozen(cgroups_path: str) -> str:
    freezer = hierarchies().get("freezer")
    if freezer is None:  # cgroup v2
        return ""
    return (freezer / cgroups_path.strip("/") / "freezer.state").read_text().strip()


def test_pause_resume_update_and_kill_all(harness: Harness) -> None:
    async def body() -> None:
        rt = harness.runtime
        c = await harness.start(
            ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.01; done"],
            resources=Resources(memory_bytes=64 << 20, pids_limit=50),
        )
        assert c.cgroup.memory_limit() == 64 << 20
        assert c.cgroup.pids_max() == 50
        await asyncio.sleep(0.2)
        await rt.pause(c.id)
        if hierarchies().get("freezer") is not None:
            assert _frozen(c.cgroups_path) == "FROZEN"
        counter = harness.rootfs / "tmp" / "n"
        before = counter.read_text()
        await asyncio.sleep(0.2)
        assert counter.read_text() == before  # nothing ran while paused
        await rt.resume(c.id)
        await asyncio.sleep(0.2)
        assert counter.read_text() != before
        new = Resources(memory_bytes=128 << 20, pids_limit=80)
        await rt.update(c.id, build_resources(new, detect_host_cgroups()))
        assert c.cgroup.memory_limit() == 128 << 20
        assert c.cgroup.pids_max() == 80
        # Every process of the container is in its cgroup (the loop's shell and its sleeps).
        assert c.pid in c.cgroup.procs() and len(c.cgroup.procs()) >= 2
        await rt.pause(c.id)  # a forced kill of a paused container must still end it
        await rt.kill(c.id, "KILL", all_processes=True)
        await c.wait()
        await rt.delete(c.id, force=True)
        assert await rt.state(c.id) is None
        assert not c.cgroup.exists()

    asyncio.run(body())


def test_only_the_containers_processes_are_in_its_cgroup(harness: Harness) -> None:
    """No process of the runtime stays behind in the container's cgroup (pids, top, freezer): not after
    a start, and not the runtime's relay while an exec runs (only the exec'd process is inside)."""

    async def body() -> None:
        from atoll.agent.runtime.oci import build_exec_process
        from atoll.agent.runtime.users import resolve_user
        from atoll.model.ports import ExecSpec

        c = await harness.start(["sleep", "60"])
        deadline = asyncio.get_running_loop().time() + 5
        assert c.cgroup.pids_current() <= 2  # atoll-init (and sleep, once it runs) at once: no zombie
        while c.cgroup.pids_current() != 2:
            assert asyncio.get_running_loop().time() < deadline, c.cgroup.pids_current()
            await asyncio.sleep(0.02)
        process = build_exec_process(
            ExecSpec(args=["sleep", "30"]),
            base_env=[],
            user=resolve_user(harness.rootfs, ""),
            default_cwd="/",
        )
        proc = await harness.runtime.exec(c.id, process)
        while c.cgroup.pids_current() != 3:  # and the exec'd sleep, without the runtime relaying it
            assert asyncio.get_running_loop().time() < deadline, c.cgroup.pids_current()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert c.cgroup.pids_current() == 3
        await proc.kill()
        assert await proc.wait() == 137
        await harness.runtime.kill(c.id, "KILL")
        await c.wait()

    asyncio.run(body())
