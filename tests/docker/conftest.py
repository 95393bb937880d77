"""One isolated `atoll up` per module, reached by the real `docker` CLI and docker-py over its own socket."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import docker
import pytest

from tests.docker.stock import DockerdUnavailable, StockDockerd
from tests.e2e.cloud import Cloud
from tests.prefix import RUN_PREFIX

DOCKER = "/usr/local/bin/docker"


class DockerCLI:
    def __init__(self, host: str) -> None:
        self.host = host

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        return {**env, "DOCKER_HOST": self.host, "DOCKER_CONFIG": "/nonexistent-atoll-docker-config"}

    def run(
        self, *args: str, input: bytes | None = None, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [DOCKER, *args],
            env=self.env(),
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def ok(self, *args: str, timeout: float = 60) -> str:
        return self.run(*args, timeout=timeout, check=True).stdout


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    if not os.path.exists(DOCKER):
        pytest.skip(f"the Docker CLI is not installed at {DOCKER}")
    c = Cloud(base=tmp_path_factory.mktemp("atoll-test-docker"))
    with c.running():
        yield c


@pytest.fixture(scope="module")
def cli(cloud: Cloud) -> DockerCLI:
    return DockerCLI(cloud.docker_host)


@pytest.fixture(scope="module")
def dockerpy(cloud: Cloud) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=cloud.docker_host, version="auto", timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerCLI]:
    """A private stock dockerd (tests/docker/stock.py) with busybox loaded, for comparisons; skips with
    the reason where dockerd cannot run."""
    daemon = StockDockerd(
        base=tmp_path_factory.mktemp("dockerd"), cgroup_parent=f"{RUN_PREFIX}-dockerd-{uuid.uuid4().hex[:6]}"
    )
    try:
        daemon.start()
        daemon.load_busybox()
    except DockerdUnavailable as e:
        daemon.stop()
        pytest.skip(f"a stock dockerd cannot run here: {e}")
    try:
        yield DockerCLI(daemon.host)
    finally:
        daemon.stop()
