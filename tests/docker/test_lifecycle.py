"""Container verbs through the Docker CLI and docker-py: ps filters, stop/kill/restart/rm, wait, logs -f,
top, stats, pause, rename, update, limits, prune, and bad input."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from atoll.services.clock import parse_iso
from tests.docker.conftest import DOCKER, DockerCLI
from tests.e2e.helpers import wait_for


@pytest.fixture
def sleeper(cli: DockerCLI) -> Iterator[str]:
    name = f"sleeper-{time.monotonic_ns()}"
    cli.ok("run", "-d", "--name", name, "--label", "role=sleeper", "busybox", "sleep", "300")
    try:
        yield name
    finally:
        cli.run("rm", "-f", name)


def test_ps_filters(cli: DockerCLI, sleeper: str) -> None:
    assert cli.run("run", "--name", "ended-4", "busybox", "sh", "-c", "exit 4").returncode == 4
    cli.ok("create", "--name", "never-started", "busybox", "true")
    try:

        def names(*a: str) -> list[str]:
            return cli.ok("ps", *a, "--format", "{{.Names}}").split()

        assert sleeper in names() and "ended-4" not in names()
        assert set(names("-a")) >= {sleeper, "ended-4", "never-started"}
        assert names("--filter", "label=role=sleeper") == [sleeper]
        assert names("-a", "--filter", "exited=4") == ["ended-4"]
        assert names("-a", "--filter", "status=created") == ["never-started"]
        assert names("-a", "--filter", "name=^/ended") == ["ended-4"]
        cid = cli.ok("inspect", "--format", "{{.Id}}", sleeper).strip()
        assert names("--filter", f"id={cid[:10]}") == [sleeper]
        assert sleeper in names("--filter", "ancestor=busybox")
        assert len(names("-a", "-n", "2")) == 2
        bad = cli.run("ps", "--filter", "bogus=1")
        assert bad.returncode != 0 and "invalid filter" in bad.stderr
    finally:
        cli.run("rm", "-f", "ended-4", "never-started")


def test_stop_kill_restart_wait_rm(cli: DockerCLI, sleeper: str) -> None:
    running = cli.run("rm", sleeper)
    assert running.returncode == 1 and "container is running" in running.stderr
    cli.ok("restart", "-t", "1", sleeper)
    state = json.loads(cli.ok("inspect", sleeper))[0]["State"]
    assert state["Running"] is True
    cli.ok("kill", "-s", "TERM", sleeper)
    assert cli.ok("wait", sleeper).strip() == "143"
    again = cli.run("kill", sleeper)
    assert again.returncode == 1 and "is not running" in again.stderr
    cli.ok("start", sleeper)
    cli.ok("kill", sleeper)
    assert cli.ok("wait", sleeper).strip() == "137"
    cli.ok("rm", sleeper)
    missing = cli.run("container", "inspect", sleeper)
    assert missing.returncode == 1 and f"No such container: {sleeper}" in missing.stderr


def test_logs_follow_until_the_container_ends(cli: DockerCLI) -> None:
    cli.ok(
        "run", "-d", "--name", "counter", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done"
    )
    try:
        follow = cli.run("logs", "-f", "counter", timeout=30)
        assert follow.stdout == "1\n2\n3\n"
        assert cli.ok("logs", "--tail", "1", "counter") == "3\n"
        stamped = cli.ok("logs", "-t", "counter").splitlines()
        assert stamped[0].endswith(" 1") and stamped[0][:4].isdigit() and "T" in stamped[0]
    finally:
        cli.run("rm", "-f", "counter")


def test_top_stats_pause_rename_update(cli: DockerCLI, sleeper: str) -> None:
    top = cli.ok("top", sleeper)
    assert "sleep 300" in top and "PID" in top.splitlines()[0]
    stats = json.loads(cli.ok("stats", "--no-stream", "--format", "{{json .}}", sleeper))
    assert stats["Name"] == sleeper and stats["PIDs"] == "2"
    assert "MiB" in stats["MemUsage"] or "KiB" in stats["MemUsage"]
    cli.ok("pause", sleeper)
    assert json.loads(cli.ok("inspect", sleeper))[0]["State"]["Status"] == "paused"
    assert "Paused" in cli.ok("ps", "--filter", f"name={sleeper}", "--format", "{{.Status}}")
    cli.ok("unpause", sleeper)
    assert json.loads(cli.ok("inspect", sleeper))[0]["State"]["Status"] == "running"
    cli.ok("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "40", sleeper)
    host = json.loads(cli.ok("inspect", sleeper))[0]["HostConfig"]
    assert host["Memory"] == 64 << 20 and host["PidsLimit"] == 40
    cli.ok("rename", sleeper, sleeper + "-renamed")
    assert cli.ok("inspect", "--format", "{{.Name}}", sleeper + "-renamed").strip() == f"/{sleeper}-renamed"
    cli.ok("rename", sleeper + "-renamed", sleeper)


def test_stats_stream_yields_samples(dockerpy: docker.DockerClient, sleeper: str) -> None:
    container = dockerpy.containers.get(sleeper)
    samples = container.stats(stream=True, decode=True)
    first, second = next(samples), next(samples)
    assert (
        second["precpu_stats"]["cpu_usage"]["total_usage"] == first["cpu_stats"]["cpu_usage"]["total_usage"]
    )
    assert second["memory_stats"]["usage"] > 0


def test_memory_limit_ooms_with_137(cli: DockerCLI) -> None:
    proc = cli.run(
        "run", "--name", "hog", "-m", "16m", "--memory-swap", "16m", "busybox",
        "sh", "-c", "x=a; while true; do x=$x$x; done",
    )  # fmt: skip
    try:
        assert proc.returncode == 137
        assert json.loads(cli.ok("inspect", "hog"))[0]["State"]["OOMKilled"] is True
    finally:
        cli.run("rm", "-f", "hog")


def test_pids_limit_stops_a_fork_bomb(cli: DockerCLI) -> None:
    bomb = "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; wait"
    out = cli.run("run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", bomb)
    assert out.returncode != 0  # the shell itself could not fork any more
    assert "can't fork" in out.stderr


def test_prune_removes_stopped_containers(cli: DockerCLI, sleeper: str) -> None:
    cli.ok("run", "--name", "prune-me", "busybox", "true")
    out = cli.ok("container", "prune", "-f")
    assert "Deleted Containers" in out
    names = cli.ok("ps", "-a", "--format", "{{.Names}}").split()
    assert "prune-me" not in names and sleeper in names


def test_fields_atoll_cannot_honour_are_refused_by_name(cli: DockerCLI) -> None:
    for flags, field in (
        (["--privileged"], "HostConfig.Privileged"),
        (["--cap-add", "NET_ADMIN"], "HostConfig.CapAdd"),
        (["-v", "/tmp:/x:z"], "HostConfig.Binds[0]"),
        (["--network", "host"], "HostConfig.NetworkMode"),
        (["--log-opt", "max-size=1m"], "HostConfig.LogConfig.Config"),
        (["-m", "1m"], "HostConfig.Memory"),
    ):
        proc = cli.run("create", *flags, "busybox", "true")
        assert proc.returncode != 0, flags
        assert field in proc.stderr, (flags, proc.stderr)
    assert "conflict" not in cli.ok("ps", "-a")  # nothing half-made
    taken = cli.run("create", "--name", "dup", "busybox", "true")
    assert taken.returncode == 0
    try:
        again = cli.run("create", "--name", "dup", "busybox", "true")
        assert again.returncode != 0 and "already in use" in again.stderr
    finally:
        cli.run("rm", "dup")


def test_docker_py_run_exec_logs(dockerpy: docker.DockerClient) -> None:
    out = dockerpy.containers.run("busybox", ["sh", "-c", "echo py-out"], remove=True)
    assert out == b"py-out\n"
    c = dockerpy.containers.run("busybox", ["sleep", "60"], detach=True, name="py-detached")
    try:
        code, output = c.exec_run(["sh", "-c", "echo in-exec; exit 3"])
        assert (code, output) == (3, b"in-exec\n")
        c.reload()
        assert c.status == "running" and c.name == "py-detached"
        c.stop(timeout=1)
        assert c.wait()["StatusCode"] == 143
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        dockerpy.containers.get("py-detached")


def test_attach_to_a_running_container_streams_new_output(cli: DockerCLI) -> None:
    cli.ok("run", "-d", "--name", "talker", "busybox", "sh", "-c", "sleep 1; echo later; sleep 0.5")
    try:
        proc = subprocess.run(
            [DOCKER, "attach", "talker"], env=cli.env(), capture_output=True, text=True, timeout=30
        )
        assert proc.stdout == "later\n"
        wait_for(lambda: cli.ok("inspect", "-f", "{{.State.Status}}", "talker").strip() == "exited")
    finally:
        cli.run("rm", "-f", "talker")


def test_exec_detached_and_in_a_paused_container(cli: DockerCLI, sleeper: str) -> None:
    cli.ok("exec", "-d", sleeper, "sh", "-c", "echo detached > /tmp/mark")
    wait_for(lambda: cli.run("exec", sleeper, "cat", "/tmp/mark").stdout == "detached\n")
    cli.ok("pause", sleeper)
    try:
        frozen = cli.run("exec", sleeper, "true")
        assert frozen.returncode != 0 and "is paused" in frozen.stderr
    finally:
        cli.ok("unpause", sleeper)


def test_logs_since_until_and_streams(dockerpy: docker.DockerClient) -> None:
    c = dockerpy.containers.run(
        "busybox", ["sh", "-c", "echo a; echo b >&2; sleep 1.2; echo c"], detach=True, name="timed"
    )
    try:
        assert c.wait()["StatusCode"] == 0
        c.reload()
        stamped = c.logs(timestamps=True).decode().splitlines()
        assert [line.split(" ", 1)[1] for line in stamped] == ["a", "b", "c"]
        assert c.logs(stdout=True, stderr=False) == b"a\nc\n"
        assert c.logs(stdout=False, stderr=True) == b"b\n"
        t0 = parse_iso(c.attrs["State"]["StartedAt"])
        assert t0 is not None
        assert c.logs(since=t0.timestamp() + 1.0) == b"c\n"
        assert c.logs(until=t0.timestamp() + 1.0) == b"a\nb\n"
        assert c.logs(tail=1) == b"c\n"
    finally:
        c.remove(force=True)


def test_update_memory_keeps_cpus(cli: DockerCLI) -> None:
    """`--cpus` shows back as a quota and period too; an update of another limit keeps it (it once
    failed with "cpus conflicts with cpu_quota")."""
    name = cli.ok("run", "-d", "--cpus", "0.5", "busybox", "sleep", "300").strip()
    try:
        cli.ok("update", "--memory", "64m", "--memory-swap", "128m", name)
        host = json.loads(cli.ok("inspect", name))[0]["HostConfig"]
        assert host["Memory"] == 64 << 20 and host["NanoCpus"] == 500_000_000
    finally:
        cli.ok("rm", "-f", name)
