"""The image GC policy in a real `atoll up`: an image that lost its last tag leaves catalog and host."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud
from tests.e2e.helpers import wait_for


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    env = {"ATOLL_IMAGE_GC_INTERVAL": "0.5", "ATOLL_IMAGE_GC_MIN_AGE": "0"}
    c = Cloud(base=tmp_path_factory.mktemp("atoll-test-cloud"), extra_env=env)
    with c.running():
        yield c


def _rootfs(path: Path, text: bytes) -> Path:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return path


def test_an_image_without_names_is_collected_from_the_host(cloud: Cloud, tmp_path: Path) -> None:
    api = cloud.api()
    first = cloud.cli("image", "build", "-t", "gc/app:1", str(_rootfs(tmp_path / "a.tar", b"one\n")))
    assert first.returncode == 0, first.stderr
    old = api.inspect_image("gc/app:1")
    layer_dir = cloud.data_dir / "images" / "layers" / old.layers[0].removeprefix("sha256:")
    assert layer_dir.is_dir()
    second = cloud.cli("image", "build", "-t", "gc/app:1", str(_rootfs(tmp_path / "b.tar", b"two\n")))
    assert second.returncode == 0, second.stderr

    wait_for(lambda: old.id not in {i.id for i in api.images()}, what="the untagged image to be collected")
    wait_for(lambda: not layer_dir.exists(), what="its layer to leave the host")
    assert api.inspect_image("gc/app:1").id != old.id
    assert "busybox:latest" in {t for i in api.images() for t in i.repo_tags}
