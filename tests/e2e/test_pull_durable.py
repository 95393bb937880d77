"""Pulls end to end with the layers' sync held (`atoll up` run through tests/e2e/held_sync.py):
`atoll image pull` returns while the data is not yet durable, `atoll run` waits for it, and an
`atoll up` killed before the sync ended forgets that pull when it starts again (the user pulls again;
nothing half present is used)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.e2e import held_sync
from tests.e2e.cloud import ATOLL, Cloud
from tests.e2e.test_registry import hello_image
from tests.registry.server import Registry, running_registry, upload


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry") / "open") as reg:
        yield reg


@pytest.fixture(scope="module")
def held_cloud(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Iterator[Cloud]:
    base = tmp_path_factory.mktemp("atoll-test-cloud")
    env = {"ATOLL_INSECURE_REGISTRIES": registry.host, "ATOLL_NO_PROGRESS": "1"}
    c = Cloud(base=base, extra_env=env, server=[sys.executable, held_sync.__file__, str(base / "hold")])
    with c.running():
        try:
            yield c
        finally:
            (base / "hold").unlink(missing_ok=True)  # before the teardown, which may wait for a sync


def layer_names(cloud: Cloud) -> set[str]:
    return {p.name for p in (cloud.data_dir / "images" / "layers").iterdir()}


def test_run_waits_for_a_pull_to_be_durable(held_cloud: Cloud, registry: Registry) -> None:
    cloud, hold = held_cloud, held_cloud.base / "hold"
    upload(registry, "e2e/held", "1", hello_image(b"durable before it ran\n"))
    ref = f"{registry.host}/e2e/held:1"
    hold.touch()
    try:
        pulled = cloud.cli("image", "pull", ref, timeout=60)
        assert pulled.returncode == 0, pulled.stderr  # returned with the sync held
        runner = subprocess.Popen(
            [ATOLL, "run", "--rm", ref], env=cloud.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(2)
        assert runner.poll() is None, "the container started on layers not yet on disk"
    finally:
        hold.unlink()
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err
    assert out == b"durable before it ran\n"


def test_a_kill_before_the_sync_forgets_the_pull(held_cloud: Cloud, registry: Registry) -> None:
    cloud, hold = held_cloud, held_cloud.base / "hold"
    upload(registry, "e2e/lost", "1", hello_image(b"pulled again\n"))
    ref = f"{registry.host}/e2e/lost:1"
    before = layer_names(cloud)
    hold.touch()
    try:
        pulled = cloud.cli("image", "pull", ref, timeout=60)
        assert pulled.returncode == 0, pulled.stderr
        assert layer_names(cloud) - before  # its own layer, and busybox's if no test pulled it yet
        cloud.kill9()
    finally:
        hold.unlink()
    cloud.start()
    assert layer_names(cloud) == before, "the layer never synced was discarded, the others kept"
    listed = cloud.cli("image", "ls", timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert b"e2e/lost" not in listed.stdout, "the catalog forgot what the host lost (imagehosts.py)"
    run = cloud.cli("run", "--rm", ref, timeout=60)
    assert run.returncode != 0, run.stdout  # the cloud no longer has it...
    assert b"not found" in run.stderr.lower() or b"no such image" in run.stderr.lower(), run.stderr
    again = cloud.cli("image", "pull", ref, timeout=60)
    assert again.returncode == 0, again.stderr  # ...so the user pulls again
    run = cloud.cli("run", "--rm", ref, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"pulled again\n"
