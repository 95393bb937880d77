"""Registries end to end: `atoll up` in a subprocess, the real CLI, a real registry on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.cloud import Cloud
from tests.e2e.test_images import busybox_layer
from tests.images import factory
from tests.registry.server import Registry, running_registry, upload


def hello_image(text: bytes) -> factory.Image:
    return factory.Image(
        layers=[busybox_layer(), factory.layer(factory.file("hello.txt", text))],
        cmd=["cat", "/hello.txt"],
        env=["PATH=/bin"],
    )


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    base = tmp_path_factory.mktemp("registries")
    with (
        running_registry(base / "open") as open_reg,
        running_registry(base / "locked", htpasswd=("alice", "s3cret")) as locked,
    ):
        yield open_reg, locked


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, registries: tuple[Registry, Registry]) -> Iterator[Cloud]:
    open_reg, locked = registries
    env = {
        "ATOLL_INSECURE_REGISTRIES": f"{open_reg.host},{locked.host}",
        "ATOLL_REGISTRY_MIRRORS": f"docker.io=http://{open_reg.host}",
        "ATOLL_NO_PROGRESS": "1",
    }
    c = Cloud(base=tmp_path_factory.mktemp("atoll-test-cloud"), extra_env=env)
    with c.running():
        yield c


def test_pull_then_run(cloud: Cloud, registries: tuple[Registry, Registry]) -> None:
    reg, _ = registries
    upload(reg, "e2e/hello", "1", hello_image(b"pulled from a registry\n"))
    ref = f"{reg.host}/e2e/hello:1"
    pulled = cloud.cli("image", "pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert b"Pull complete" in pulled.stderr
    run = cloud.cli("run", "--rm", ref)
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"pulled from a registry\n"
    assert f"{reg.host}/e2e/hello" in cloud.cli("image", "ls").stdout.decode()


def test_a_docker_hub_name_is_pulled_from_the_mirror(
    cloud: Cloud, registries: tuple[Registry, Registry]
) -> None:
    reg, _ = registries
    upload(reg, "library/mirrored", "latest", hello_image(b"from the mirror\n"))
    pulled = cloud.cli("image", "pull", "mirrored")
    assert pulled.returncode == 0, pulled.stderr
    run = cloud.cli("run", "--rm", "mirrored")
    assert run.stdout == b"from the mirror\n", run.stderr


def test_missing_image_is_a_clear_error(cloud: Cloud, registries: tuple[Registry, Registry]) -> None:
    reg, _ = registries
    result = cloud.cli("image", "pull", f"{reg.host}/e2e/absent:1")
    assert result.returncode == 1
    assert b"manifest unknown" in result.stderr or b"not found" in result.stderr


def test_login_then_pull_and_push(
    cloud: Cloud, registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    reg, locked = registries
    upload(locked, "private/app", "1", hello_image(b"private\n"))
    ref = f"{locked.host}/private/app:1"
    refused = cloud.cli("image", "pull", ref)
    assert refused.returncode == 1 and b"atoll login" in refused.stderr, refused.stderr
    wrong = cloud.cli("login", locked.host, "-u", "alice", "--password-stdin", input=b"wrong\n")
    assert wrong.returncode == 1 and b"refused" in wrong.stderr, wrong.stderr
    ok = cloud.cli("login", locked.host, "-u", "alice", "--password-stdin", input=b"s3cret\n")
    assert ok.returncode == 0, ok.stderr
    logins = httpx.get(f"{cloud.url}/v1/projects/default/registry-logins").text
    assert "alice" in logins and "s3cret" not in logins
    assert cloud.cli("image", "pull", ref).returncode == 0

    # push a copy to the open registry, and back under another name to the locked one
    target = f"{reg.host}/e2e/copy:2"
    assert cloud.cli("image", "tag", ref, target).returncode == 0
    pushed = cloud.cli("image", "push", target)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.decode().strip()
    with reg.http() as client:
        head = client.head("/v2/e2e/copy/manifests/2", headers={"Accept": factory.OCI_MANIFEST})
        assert head.headers["docker-content-digest"] == digest
    assert cloud.cli("logout", locked.host).returncode == 0
    assert cloud.cli("image", "pull", ref).returncode == 1


def test_prune_frees_layers_on_the_host(cloud: Cloud, registries: tuple[Registry, Registry]) -> None:
    reg, _ = registries
    upload(reg, "e2e/prunable", "1", hello_image(b"soon gone\n"))
    ref = f"{reg.host}/e2e/prunable:1"
    assert cloud.cli("image", "pull", ref).returncode == 0
    layers = cloud.data_dir / "images" / "layers"
    before = len(list(layers.iterdir()))
    assert cloud.cli("image", "prune", "-f").returncode == 0  # nothing dangling yet
    assert "e2e/prunable" in cloud.cli("image", "ls").stdout.decode()
    result = cloud.cli("image", "prune", "-a", "-f")
    assert result.returncode == 0, result.stderr
    assert b"deleted: sha256:" in result.stdout
    listing = cloud.cli("image", "ls").stdout.decode()
    assert "e2e/prunable" not in listing and "busybox" in listing  # the public starter image stays
    assert len(list(layers.iterdir())) < before


def test_repo_digests_name_pulled_and_pushed_images(
    cloud: Cloud, registries: tuple[Registry, Registry]
) -> None:
    reg, _ = registries
    digest = upload(reg, "e2e/digested", "1", hello_image(b"named by digest\n"))
    api = cloud.api()
    by_tag = f"{reg.host}/e2e/digested:1"
    by_digest = f"{reg.host}/e2e/digested@{digest}"
    assert cloud.cli("image", "pull", by_tag).returncode == 0
    image = api.inspect_image(by_tag)
    assert image.repo_digests == [by_digest]
    listing = cloud.cli("image", "ls", "--digests").stdout.decode()
    assert any(digest in line and f"{reg.host}/e2e/digested" in line for line in listing.splitlines())
    # the digest reference names the same image: inspect, pull again (nothing new) and run
    assert api.inspect_image(by_digest).id == image.id
    assert cloud.cli("image", "pull", by_digest).returncode == 0
    run = cloud.cli("run", "--rm", by_digest)
    assert run.stdout == b"named by digest\n", run.stderr
    # a push records the digest the target registry serves it under
    pushed = cloud.cli("image", "tag", by_tag, f"{reg.host}/e2e/copied:2")
    assert pushed.returncode == 0, pushed.stderr
    assert cloud.cli("image", "push", f"{reg.host}/e2e/copied:2").returncode == 0
    assert f"{reg.host}/e2e/copied@{digest}" in api.inspect_image(image.id).repo_digests
    # removing by digest only untags while other names remain
    removed = cloud.cli("image", "rm", by_digest)
    assert removed.returncode == 0, removed.stderr
    assert by_digest not in api.inspect_image(image.id).repo_digests
    assert cloud.cli("image", "rm", by_tag).returncode == 0
    # as in Docker, a repository's digests go with its last tag, and the last name takes the image
    last = cloud.cli("image", "rm", f"{reg.host}/e2e/copied:2")
    assert last.returncode == 0, last.stderr
    assert f"{reg.host}/e2e/copied@{digest}" in last.stdout.decode()
    assert cloud.cli("image", "inspect", image.id).returncode != 0
