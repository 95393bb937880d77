"""A container's stdin outlives the control plane: `docker run -di`, kill -9 of `atoll up`, restart,
then attach and feed it; a restart policy set through Docker applies too."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker.conftest import DOCKER, DockerCLI
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import wait_for


@pytest.fixture
def own_cloud(tmp_path: Path) -> Iterator[Cloud]:
    c = Cloud(base=tmp_path / "atoll-test-docker-survival")
    c.base.mkdir()
    with c.running():
        yield c


def test_stdin_survives_a_kill_9_of_the_control_plane(own_cloud: Cloud) -> None:
    cli = DockerCLI(own_cloud.docker_host)
    cli.ok(
        "run",
        "-di",
        "--name",
        "reader",
        "busybox",
        "sh",
        "-c",
        "while read line; do echo got $line; done; echo eof",
    )
    pid = json.loads(cli.ok("inspect", "reader"))[0]["State"]["Pid"]
    own_cloud.kill9()
    time.sleep(1)
    assert Path(f"/proc/{pid}").exists(), "the container died with the control plane"
    own_cloud.start()
    # Attach after the restart and feed stdin; closing it ends the loop.
    proc = subprocess.run(
        [DOCKER, "attach", "reader"],
        input="one\ntwo\n",
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout == "got one\ngot two\neof\n", proc.stderr
    wait_for(lambda: cli.ok("inspect", "-f", "{{.State.Status}}", "reader").strip() == "exited")
    assert json.loads(cli.ok("inspect", "reader"))[0]["State"]["Pid"] == 0


def test_restart_policy_through_docker(own_cloud: Cloud) -> None:
    cli = DockerCLI(own_cloud.docker_host)
    cli.ok("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
    wait_for(
        lambda: cli.ok("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky").strip() == "2 exited"
    )
    policy = json.loads(cli.ok("inspect", "flaky"))[0]["HostConfig"]["RestartPolicy"]
    assert policy == {"Name": "on-failure", "MaximumRetryCount": 2}
