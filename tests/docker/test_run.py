"""`docker run` through Atoll's Docker API: attached, detached, stdin, tty, exit codes, --rm."""

from __future__ import annotations

import hashlib
import json
import subprocess

from tests.docker.conftest import DOCKER, DockerCLI
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import run


def test_run_attached_prints_both_streams_and_propagates_the_exit_code(cli: DockerCLI) -> None:
    proc = cli.run("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert proc.returncode == 3
    assert proc.stdout == "out\n"
    assert proc.stderr == "err\n"


def test_run_rm_removes_the_container(cli: DockerCLI) -> None:
    assert cli.ok("run", "--rm", "--name", "gone", "busybox", "true") == ""
    assert "gone" not in cli.ok("ps", "-a", "--format", "{{.Names}}")


def test_run_killed_by_signal_exits_128_plus_signal(cli: DockerCLI) -> None:
    assert cli.run("run", "--rm", "busybox", "sh", "-c", "kill -9 $$").returncode == 137


def test_unknown_command_is_127_and_bad_image_is_an_error(cli: DockerCLI) -> None:
    assert cli.run("run", "--rm", "busybox", "no-such-binary").returncode in (126, 127)
    proc = cli.run("run", "--rm", "--pull", "never", "nosuchimage:1", "true")
    assert proc.returncode == 125
    assert "No such image" in proc.stderr


def test_run_i_feeds_stdin_and_closes_it(cli: DockerCLI) -> None:
    proc = cli.run("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done", input=b"hello stdin\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello stdin\ndone\n"


def test_run_i_carries_a_large_stdin_whole(cli: DockerCLI) -> None:
    data = b"0123456789abcdef" * 40000  # 640 KB: many frames and back-pressure through the FIFO
    proc = cli.run("run", "-i", "--rm", "busybox", "md5sum", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == hashlib.md5(data).hexdigest()


def test_run_t_gives_a_terminal(cli: DockerCLI) -> None:
    proc = cli.run("run", "-t", "--rm", "busybox", "sh", "-c", "tty; echo x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.replace("\r\n", "\n") == "/dev/pts/0\nx\n"


def test_run_it_carries_input_and_resizes(cli: DockerCLI) -> None:
    """-it needs the CLI's own stdin to be a terminal: `script` gives it one."""
    inner = "stty size; read a; echo got $a"  # no sleep: the size is set before the process starts
    command = f"stty cols 99 rows 33; {DOCKER} run -it --rm busybox sh -c '{inner}'"
    proc = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        input="line1\n",
        capture_output=True,
        text=True,
        env=cli.env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "33 99" in proc.stdout
    assert "got line1" in proc.stdout


def test_run_d_then_logs_exec_inspect_stop(cli: DockerCLI, cloud: Cloud) -> None:
    cid = cli.ok(
        "run", "-d", "--name", "ticker", "busybox", "sh", "-c", "echo one; echo two; sleep 60"
    ).strip()
    assert len(cid) == 64
    try:
        assert cli.ok("logs", "ticker").splitlines()[:2] == ["one", "two"]
        assert cli.ok("exec", "ticker", "echo", "from-exec") == "from-exec\n"
        assert cli.run("exec", "ticker", "sh", "-c", "exit 7").returncode == 7
        assert cli.run("exec", "-i", "ticker", "cat", input=b"piped\n").stdout == "piped\n"
        state = json.loads(cli.ok("inspect", "ticker"))[0]
        assert state["Name"] == "/ticker"
        assert state["State"]["Running"] is True and state["State"]["Pid"] > 0
        assert state["Config"]["Cmd"] == ["sh", "-c", "echo one; echo two; sleep 60"]
        # One model: the native API sees the same instance.
        assert cloud.api().inspect_instance("ticker").id == cid
        assert cli.ok("stop", "-t", "1", "ticker").strip() == "ticker"
        state = json.loads(cli.ok("inspect", "ticker"))[0]["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 143
        assert state["FinishedAt"] != "0001-01-01T00:00:00Z"
    finally:
        cli.run("rm", "-f", "ticker")


def test_native_instances_show_up_in_docker_ps(cli: DockerCLI, cloud: Cloud) -> None:
    iid = run(cloud.api(), "sleep", "30", name="native-one")
    try:
        assert "native-one" in cli.ok("ps", "--format", "{{.Names}}").split()
        assert json.loads(cli.ok("inspect", iid))[0]["Id"] == iid
    finally:
        cloud.api().remove_instance(iid, force=True)
