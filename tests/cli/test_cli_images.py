"""``atoll image``: sources (file, directory, stdin), build config, and the listing."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest

from atoll.client import SupportsRead
from atoll.schemas import ImageConfigWire, ImageRemoved
from tests.cli.conftest import Invoke
from tests.cli.factories import IMAGE_ID, make_image


class Recorder:
    """Consumes the upload as the SDK would, recording the bytes and the progress calls."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.body = b""
        self.kwargs: dict[str, Any] = {}
        self.progress: list[int] = []

    def __call__(self, stream: SupportsRead | Iterable[bytes], progress: Any = None, **kwargs: Any) -> Any:
        progress = progress or kwargs.pop("progress", None)
        self.kwargs = kwargs
        if isinstance(stream, SupportsRead):
            self.body = stream.read()
        else:
            self.body = b"".join(stream)
        if progress:
            progress(len(self.body))
        return self.result


def test_import_a_file(cli: Invoke, api: MagicMock, tmp_path: Path) -> None:
    archive = tmp_path / "alpine.tar"
    archive.write_bytes(b"tarball bytes")
    api.import_image.side_effect = recorder = Recorder(
        [make_image(repo_tags=["alpine:3.19", "alpine:latest"])]
    )
    result = cli("image", "import", str(archive))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Loaded image: alpine:3.19\nLoaded image: alpine:latest\n"
    assert recorder.body == b"tarball bytes"
    assert recorder.kwargs == {"size": 13}


def test_import_stdin(cli: Invoke, api: MagicMock) -> None:
    api.import_image.side_effect = recorder = Recorder([make_image(repo_tags=[])])
    result = cli("image", "import", "-", input=b"from stdin")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Loaded image ID: {IMAGE_ID}\n"
    assert recorder.body == b"from stdin"
    assert recorder.kwargs == {"size": None}


def test_import_an_oci_layout_directory(cli: Invoke, api: MagicMock, tmp_path: Path) -> None:
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "index.json").write_text("{}")
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    (tmp_path / "blobs" / "sha256" / "ab").write_bytes(b"blob")
    api.import_image.side_effect = recorder = Recorder([make_image()])
    assert cli("image", "import", str(tmp_path)).exit_code == 0
    with tarfile.open(fileobj=io.BytesIO(recorder.body)) as tar:
        names = tar.getnames()
    assert names == ["blobs", "index.json", "oci-layout", "blobs/sha256", "blobs/sha256/ab"]


def test_import_refuses_a_plain_directory(cli: Invoke, api: MagicMock, tmp_path: Path) -> None:
    result = cli("image", "import", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path} is neither an OCI image layout")
    api.import_image.assert_not_called()


def test_import_missing_file(cli: Invoke, api: MagicMock, tmp_path: Path) -> None:
    result = cli("image", "import", str(tmp_path / "nope.tar"))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path}/nope.tar: no such file or directory\n"


def test_build_from_a_directory(cli: Invoke, api: MagicMock, tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "app").write_bytes(b"#!/bin/sh\n")
    api.build_image.side_effect = recorder = Recorder(make_image())
    result = cli(
        "image", "build", "--tag", "app:v1",
        "--cmd", '["/bin/app", "--serve"]', "--entrypoint", "tini --",
        "-e", "A=1", "-w", "/srv", "-u", "app", "-l", "team=x", "--expose", "80", "--stop-signal", "SIGINT",
        str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{IMAGE_ID}\n"
    assert recorder.kwargs["tag"] == "app:v1"
    assert recorder.kwargs["config"] == ImageConfigWire(
        cmd=["/bin/app", "--serve"],
        entrypoint=["tini", "--"],
        env=["A=1"],
        working_dir="/srv",
        user="app",
        labels={"team": "x"},
        stop_signal="SIGINT",
        exposed_ports=["80/tcp"],
    )
    with tarfile.open(fileobj=io.BytesIO(recorder.body)) as tar:
        assert tar.getnames() == ["bin", "bin/app"]


def test_build_needs_a_tag(cli: Invoke, api: MagicMock, tmp_path: Path) -> None:
    assert cli("image", "build", str(tmp_path)).exit_code == 2
    api.build_image.assert_not_called()


def test_image_ls(cli: Invoke, api: MagicMock) -> None:
    created = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    api.images.return_value = [
        make_image(repo_tags=["localhost:5000/app:v1", "app:latest"], created=created, size=133_000_000),
        make_image(id="sha256:" + "1" * 64, repo_tags=[], created=created, size=512),
    ]
    result = cli("image", "ls")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert rows[1] == ["localhost:5000/app", "v1", IMAGE_ID[7:19], "3", "days", "ago", "133MB"]
    assert rows[2][:2] == ["app", "latest"]
    assert rows[3] == ["<none>", "<none>", "1" * 12, "3", "days", "ago", "512B"]
    assert cli("image", "ls", "-q").stdout == f"{IMAGE_ID[7:19]}\n{'1' * 12}\n"


def test_image_rm_tag_inspect(cli: Invoke, api: MagicMock) -> None:
    api.remove_image.return_value = ImageRemoved(untagged=["app:v1"], deleted=[IMAGE_ID])
    result = cli("image", "rm", "-f", "app:v1")
    assert result.stdout == f"Untagged: app:v1\nDeleted: {IMAGE_ID}\n"
    api.remove_image.assert_called_once_with("app:v1", force=True)

    assert cli("image", "tag", "app:v1", "registry:5000/app:v2").exit_code == 0
    api.tag_image.assert_called_once_with("app:v1", "registry:5000/app:v2")

    api.inspect_image.return_value = make_image()
    data = json.loads(cli("image", "inspect", "alpine").stdout)
    assert data[0]["id"] == IMAGE_ID


@pytest.mark.parametrize("args", [["image"], ["project"], ["host"]])
def test_groups_show_help(cli: Invoke, args: list[str]) -> None:
    result = cli(*args)
    assert "Usage" in result.output
