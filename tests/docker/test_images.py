"""Images through the Docker API: ls (filters), inspect, tag, rmi, pull from a loopback registry, build."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.docker.conftest import DOCKER, DockerCLI
from tests.e2e.cloud import Cloud
from tests.e2e.test_images import busybox_layer
from tests.images import factory
from tests.registry.server import Registry, need_registry, running_registry, upload


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    need_registry()
    with running_registry(tmp_path_factory.mktemp("docker-registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    need_registry()
    with running_registry(tmp_path_factory.mktemp("docker-locked"), htpasswd=("alice", "s3cret")) as reg:
        yield reg


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, registry: Registry, locked: Registry) -> Iterator[Cloud]:
    if not os.path.exists(DOCKER):
        pytest.skip(f"the Docker CLI is not installed at {DOCKER}")
    env = {"ATOLL_INSECURE_REGISTRIES": f"{registry.host},{locked.host}"}
    c = Cloud(base=tmp_path_factory.mktemp("atoll-test-docker-images"), extra_env=env)
    with c.running():
        yield c


def test_images_ls_inspect_tag_rmi(cli: DockerCLI) -> None:
    assert "busybox:latest" in cli.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    cli.ok("tag", "busybox", "team/box:1")
    listed = cli.ok("images", "--filter", "reference=team/*", "--format", "{{.Repository}}:{{.Tag}}")
    assert listed.split() == ["team/box:1"]
    [image] = json.loads(cli.ok("image", "inspect", "team/box:1"))
    assert image["Id"].startswith("sha256:")
    assert set(image["RepoTags"]) >= {"busybox:latest", "team/box:1"}
    assert image["Os"] == "linux" and image["Architecture"] == "amd64"
    assert image["Config"]["Cmd"] == ["sh"]
    assert image["RootFS"]["Type"] == "layers" and image["RootFS"]["Layers"]
    assert image["Size"] > 0 and image["Created"]
    assert cli.ok("rmi", "team/box:1").strip() == "Untagged: team/box:1"
    assert "team/box" not in cli.ok("images")
    missing = cli.run("image", "inspect", "no/such:image")
    assert missing.returncode == 1 and "No such image" in missing.stderr


def test_rmi_of_an_image_in_use_is_a_conflict(cli: DockerCLI) -> None:
    cli.ok("tag", "busybox", "inuse:1")
    cli.ok("create", "--name", "user-of-inuse", "inuse:1", "true")
    try:
        cli.ok("rmi", "busybox")  # another tag remains: only untagged
        proc = cli.run("rmi", "inuse:1")
        assert proc.returncode == 1 and "conflict" in proc.stderr
    finally:
        cli.run("rm", "-f", "user-of-inuse")
        cli.run("tag", "inuse:1", "busybox:latest")
        cli.run("rmi", "inuse:1")


def test_pull_from_a_loopback_registry_then_run(cli: DockerCLI, registry: Registry) -> None:
    image = factory.Image(
        layers=[busybox_layer(), factory.layer(factory.file("hello.txt", b"pulled through docker\n"))],
        cmd=["cat", "/hello.txt"],
        env=["PATH=/bin"],
    )
    upload(registry, "e2e/hello", "1", image)
    ref = f"{registry.host}/e2e/hello:1"
    pulled = cli.run("pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert "Status: Downloaded" in pulled.stdout or "Pull complete" in pulled.stdout
    assert cli.ok("run", "--rm", ref) == "pulled through docker\n"
    absent = cli.run("pull", f"{registry.host}/e2e/absent:1")
    assert absent.returncode == 1
    cli.ok("rmi", ref)


def test_docker_py_pulls_and_lists(dockerpy: docker.DockerClient, registry: Registry) -> None:
    image = factory.Image(layers=[busybox_layer()], cmd=["true"], env=["PATH=/bin"])
    upload(registry, "e2e/py", "2", image)
    pulled = dockerpy.images.pull(f"{registry.host}/e2e/py", tag="2")
    assert f"{registry.host}/e2e/py:2" in pulled.tags
    assert any(f"{registry.host}/e2e/py:2" in i.tags for i in dockerpy.images.list())
    dockerpy.images.remove(f"{registry.host}/e2e/py:2")


def test_build_is_refused_clearly(cli: DockerCLI) -> None:
    proc = cli.run("build", "-t", "x", "-", input=b"FROM busybox\n")
    assert proc.returncode != 0
    assert "not supported by Atoll yet" in proc.stderr


def test_push_then_pull_back(cli: DockerCLI, registry: Registry) -> None:
    ref = f"{registry.host}/e2e/pushed:1"
    cli.ok("tag", "busybox", ref)
    pushed = cli.run("push", ref)
    assert pushed.returncode == 0, pushed.stderr
    assert "digest: sha256:" in pushed.stdout
    cli.ok("rmi", ref)
    assert cli.run("pull", ref).returncode == 0
    assert cli.ok("run", "--rm", ref, "echo", "round trip") == "round trip\n"
    cli.ok("rmi", ref)


def test_login_is_checked_and_used_for_pushes(cli: DockerCLI, locked: Registry, tmp_path: Path) -> None:
    env = {**cli.env(), "DOCKER_CONFIG": str(tmp_path / "docker-config")}

    def docker_cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOCKER, *args], env=env, input=input, capture_output=True, text=True, timeout=60
        )

    ref = f"{locked.host}/team/app:1"
    cli.ok("tag", "busybox", ref)
    try:
        refused = docker_cli("push", ref)
        assert refused.returncode != 0
        wrong = docker_cli("login", locked.host, "-u", "alice", "--password-stdin", input="nope\n")
        assert wrong.returncode != 0
        right = docker_cli("login", locked.host, "-u", "alice", "--password-stdin", input="s3cret\n")
        assert right.returncode == 0 and "Login Succeeded" in right.stdout, right.stderr
        pushed = docker_cli("push", ref)
        assert pushed.returncode == 0, pushed.stderr
    finally:
        cli.run("rmi", ref)


def test_image_prune_removes_unused_images_only(cli: DockerCLI, registry: Registry) -> None:
    image = factory.Image(layers=[busybox_layer()], cmd=["sh"], env=["PATH=/bin"])
    upload(registry, "e2e/prunable", "1", image)
    ref = f"{registry.host}/e2e/prunable:1"
    cli.ok("pull", ref)
    assert cli.ok("image", "prune", "-f").strip().endswith("Total reclaimed space: 0B")  # nothing dangling
    out = cli.ok("image", "prune", "-a", "-f")
    assert f"untagged: {ref}" in out and "deleted: sha256:" in out
    assert ref not in cli.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert "busybox" in cli.ok("images")  # public, and used: kept
