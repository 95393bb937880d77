"""The runtime wrapper: selection, idempotent commands, failures that leave nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atoll.agent.runtime.cgroups import cgroup_version, hierarchies
from atoll.agent.runtime.oci_runtime import OciRuntime
from atoll.agent.runtime.selection import select_runtime
from atoll.model.errors import InvalidInput, RuntimeFailure
from tests.runtime.conftest import Harness


def test_auto_probe_selects_a_working_runtime(harness: Harness) -> None:
    async def body() -> OciRuntime:
        return await select_runtime(
            "auto", harness.tmp / "rt", harness.init_binary, harness.tmp, harness.cgroup_parent
        )

    runtime = asyncio.run(body())
    if shutil.which("crun") is not None:
        # crun is preferred; on a cgroup v1 host (hybrid or not) with the agent's own cgroups.
        assert runtime.name == "crun"
        assert runtime.own_cgroups == (cgroup_version() == 1)
    assert runtime.name in ("runc", "crun")
    assert runtime.root == harness.tmp / "rt" / runtime.name
    # The probe container left nothing: no state, no bundle, no cgroup.
    for name in ("crun", "runc"):
        state_dir = harness.tmp / "rt" / name
        assert not state_dir.exists() or list(state_dir.iterdir()) == []
    assert not list(harness.tmp.glob("atoll-probe-*"))
    for mountpoint in set(hierarchies().values()):
        assert not (mountpoint / harness.cgroup_parent).exists()  # not even the parent it made


def test_explicit_runtime_names(harness: Harness) -> None:
    async def body() -> None:
        runc = await select_runtime("runc", harness.tmp / "rt", harness.init_binary, harness.tmp, "x")
        assert (runc.name, runc.binary) == ("runc", shutil.which("runc"))
        assert not runc.own_cgroups
        if shutil.which("crun") is not None:
            crun = await select_runtime("crun", harness.tmp / "rt", harness.init_binary, harness.tmp, "x")
            assert crun.name == "crun" and crun.own_cgroups == (cgroup_version() == 1)
            assert "--cgroup-manager=disabled" in crun.argv or cgroup_version() == 2
        with pytest.raises(InvalidInput, match="unknown runtime 'kata'"):
            await select_runtime("kata", harness.tmp / "rt", harness.init_binary, harness.tmp, "x")

    asyncio.run(body())


def test_commands_on_unknown_containers_are_harmless(harness: Harness) -> None:
    async def body() -> None:
        rt = harness.runtime
        assert await rt.state("nope") is None
        await rt.kill("nope", "KILL")
        await rt.delete("nope")
        await rt.delete("nope", force=True)
        assert await rt.list() == []

    asyncio.run(body())


def test_lifecycle_state_list_delete(harness: Harness) -> None:
    async def body() -> None:
        rt = harness.runtime
        c = await harness.start(["sleep", "60"])
        state = await rt.state(c.id)
        assert state is not None
        assert (state["status"], state["pid"]) == ("running", c.pid)
        assert [item["id"] for item in await rt.list()] == [c.id]
        with pytest.raises(RuntimeFailure):
            await rt.delete(c.id)  # running: refused without force
        await rt.delete(c.id, force=True)
        assert await rt.state(c.id) is None
        await rt.delete(c.id)
        assert not c.cgroup.exists()

    asyncio.run(body())


def test_failed_run_reports_the_runtime_error_and_leaves_nothing(harness: Harness) -> None:
    async def body() -> None:
        spec = harness.spec(["true"])
        config = harness.config(spec)
        config["root"]["path"] = str(harness.tmp / "no-such-rootfs")
        with pytest.raises(RuntimeFailure, match=r"(runc|crun) run .*no-such-rootfs") as err:
            await harness.start_spec(spec, config)
        assert "no such file or directory" in err.value.message.lower()
        assert await harness.runtime.state(spec.id) is None
        assert not (harness.runtime.root / spec.id).exists()

    asyncio.run(body())


def test_a_second_run_with_the_same_id_leaves_the_first_alone(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.start(["sleep", "60"])
        spec = harness.spec(["true"])
        config = harness.config(spec)
        (harness.tmp / "again").mkdir()
        (harness.tmp / "again" / "config.json").write_text(json.dumps(config))
        fd = os.open(harness.tmp / "again" / "f", os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(RuntimeFailure, match="already exists"):
                await harness.runtime.run_detached(
                    c.id, harness.tmp / "again", log_fd=fd, exit_fd=fd, pid_file=harness.tmp / "again" / "pid"
                )
        finally:
            os.close(fd)
        state = await harness.runtime.state(c.id)
        assert state is not None and state["status"] == "running"
        await harness.runtime.kill(c.id, "KILL")
        await c.wait()

    asyncio.run(body())


def test_an_unreadable_leftover_state_does_not_block_the_id(harness: Harness) -> None:
    async def body() -> None:
        spec = harness.spec(["true"])
        (harness.runtime.root / spec.id).mkdir(parents=True)
        c = await harness.start_spec(spec)
        await c.wait()
        assert c.exit_status() == (0, 0)

    asyncio.run(body())


def test_start_survives_the_agent(harness: Harness) -> None:
    """A container started by a process that is then SIGKILLed keeps running and still records its end."""
    script = f"""
import asyncio, os, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from atoll.agent.runtime.oci_runtime import OciRuntime

async def main():
    launcher = {str(harness.runtime.launcher) if harness.runtime.launcher else None!r}
    rt = OciRuntime(
        {harness.runtime.name!r}, {harness.runtime.binary!r}, Path({str(harness.runtime.root)!r}),
        launcher=Path(launcher) if launcher else None,
    )
    bundle = Path(sys.argv[1])
    log = os.open(bundle / "container.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    ex = os.open(bundle / "exit", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    pid = await rt.run_detached(sys.argv[2], bundle, log_fd=log, exit_fd=ex, pid_file=bundle / "pid")
    print(pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""
    spec = harness.spec(["sh", "-c", "sleep 0.5; echo late; exit 9"])
    bundle = harness.tmp / spec.id
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(harness.config(spec)))
    agent = subprocess.Popen(
        [sys.executable, "-c", script, str(bundle), spec.id],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        pid = int(agent.stdout.readline())
    finally:
        agent.kill()
        agent.wait()
    state = asyncio.run(harness.runtime.state(spec.id))
    assert state is not None and state["status"] == "running"
    deadline = time.monotonic() + 10
    while (bundle / "exit").stat().st_size == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (bundle / "exit").read_text() == "9 0\n"
    assert b"late" in (bundle / "container.log").read_bytes()
    assert pid > 0


FAKE_RUNTIME = """#!/bin/sh
# A runtime whose init has just exited: kill finds no process, state still says running (a zombie).
for arg; do case "$arg" in
  kill) echo "$KILL_ERROR" >&2; exit 1;;
  state) echo '{"status": "running"}'; exit 0;;
esac; done
exit 2
"""


@pytest.mark.parametrize(
    ("error", "raises"), [("kill container: No such process", False), ("kill: Operation not permitted", True)]
)
def test_a_kill_that_finds_no_process_has_done_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: str, raises: bool
) -> None:
    binary = tmp_path / "fake-runtime"
    binary.write_text(FAKE_RUNTIME)
    binary.chmod(0o755)
    (tmp_path / "root" / "c1").mkdir(parents=True)  # the runtime knows the container
    monkeypatch.setenv("KILL_ERROR", error)
    runtime = OciRuntime("crun", str(binary), tmp_path / "root")
    if raises:
        with pytest.raises(RuntimeFailure, match="Operation not permitted"):
            asyncio.run(runtime.kill("c1", "SIGTERM"))
    else:
        asyncio.run(runtime.kill("c1", "SIGTERM"))  # `rm -f` racing an exit must not fail
