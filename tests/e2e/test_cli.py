"""The `atoll` command line against a real cloud."""

from __future__ import annotations

import json

from tests.e2e.cloud import Cloud


def test_run_in_the_foreground_prints_output_and_propagates_the_exit_code(cloud: Cloud) -> None:
    result = cloud.cli("run", "--rm", "busybox", "sh", "-c", "echo hello; echo warn >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"hello\n"
    assert b"warn" in result.stderr


def test_detached_run_ps_logs_exec_stop_rm(cloud: Cloud) -> None:
    started = cloud.cli(
        "run", "-d", "--name", "cli-web", "-l", "app=web", "busybox", "sh", "-c", "echo up; sleep 300"
    )
    assert started.returncode == 0, started.stderr
    ident = started.stdout.decode().strip()
    ps = cloud.cli("ps").stdout.decode()
    assert "cli-web" in ps and ident[:12] in ps and "Up" in ps
    assert cloud.cli("ps", "-q", "--filter", "label=app=web").stdout.decode().split() == [ident[:12]]
    assert cloud.cli("logs", "cli-web").stdout == b"up\n"
    ex = cloud.cli("exec", "cli-web", "sh", "-c", "echo inside; exit 9")
    assert (ex.returncode, ex.stdout) == (9, b"inside\n")
    assert cloud.cli("stop", "-t", "1", "cli-web").returncode == 0
    # sh is not process 1 (atoll-init is), so SIGTERM ends it: 128 + 15
    assert cloud.cli("wait", "cli-web").stdout.decode().strip() == "143"
    inspect = json.loads(cloud.cli("inspect", "cli-web").stdout)
    assert inspect[0]["status"] == "exited"
    assert cloud.cli("rm", "cli-web").returncode == 0
    assert "cli-web" not in cloud.cli("ps", "-a").stdout.decode()


def test_errors_are_clear(cloud: Cloud) -> None:
    result = cloud.cli("run", "no-such-image")
    assert result.returncode != 0 and b"no-such-image" in result.stderr
    result = cloud.cli("stop", "no-such-instance")
    assert result.returncode == 1 and b"no-such-instance" in result.stderr
