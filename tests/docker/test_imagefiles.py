"""Images as files through the real docker CLI and docker-py: save (its tar shape), rmi then load and run,
import of a root filesystem with --change, history, system df."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import docker
import pytest

from tests.docker.conftest import DOCKER, DockerCLI
from tests.e2e.test_images import busybox_layer
from tests.images import factory


def _run_input(cli: DockerCLI, *args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """The CLI with binary stdin (DockerCLI.run speaks text)."""
    return subprocess.run([DOCKER, *args], env=cli.env(), input=data, capture_output=True, timeout=60)


def test_save_shape(cli: DockerCLI, tmp_path: Path) -> None:
    out = tmp_path / "busybox.tar"
    cli.ok("save", "-o", str(out), "busybox")
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
    assert {"manifest.json", "repositories", "index.json", "oci-layout"} <= set(names)
    [entry] = manifest
    assert entry["RepoTags"] == ["busybox:latest"]
    image_id = cli.ok("image", "inspect", "--format", "{{.Id}}", "busybox").strip()
    assert entry["Config"] == "blobs/sha256/" + image_id.removeprefix("sha256:")
    assert all(name in names for name in entry["Layers"])
    assert "busybox" in repositories


def test_save_rmi_load_run(cli: DockerCLI, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_layer())
    image_id = cli.ok("import", "--change", 'CMD ["/bin/echo", "from-import"]', str(rootfs), "roundtrip:1")
    image_id = image_id.strip()
    archive = tmp_path / "roundtrip.tar"
    cli.ok("save", "-o", str(archive), "roundtrip:1")
    assert "Untagged: roundtrip:1" in cli.ok("rmi", "roundtrip:1")
    assert cli.run("image", "inspect", "roundtrip:1").returncode != 0
    loaded = cli.ok("load", "-i", str(archive))
    assert "Loaded image: roundtrip:1" in loaded
    assert cli.ok("image", "inspect", "--format", "{{.Id}}", "roundtrip:1").strip() == image_id
    assert cli.ok("run", "--rm", "roundtrip:1").strip() == "from-import"
    # A quiet load through stdin, of an image that is there already: the same answer.
    assert (
        _run_input(cli, "load", "-q", data=archive.read_bytes()).stdout.decode().strip()
        == "Loaded image: roundtrip:1"
    )
    bad = _run_input(cli, "load", data=b"not an archive")
    assert bad.returncode != 0 and bad.stderr.strip()
    cli.ok("rmi", "roundtrip:1")


def test_import_changes(cli: DockerCLI, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_layer())
    cli.ok(
        "import",
        "-c",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR /bin",
        "-c",
        "CMD sh -c 'echo $GREETING from $(pwd)'",
        str(rootfs),
        "changed:1",
    )
    [image] = json.loads(cli.ok("image", "inspect", "changed:1"))
    assert "GREETING=hello" in image["Config"]["Env"]
    assert image["Config"]["WorkingDir"] == "/bin"
    assert cli.ok("run", "--rm", "changed:1").strip() == "hello from /bin"
    refused = cli.run("import", "-c", "VOLUME /data", str(rootfs), "refused:1")
    assert refused.returncode != 0 and "changes: VOLUME" in refused.stderr
    assert cli.run("image", "inspect", "refused:1").returncode != 0
    with_message = cli.run("import", "-m", "hello", str(rootfs), "refused:2")
    assert with_message.returncode != 0 and "message:" in with_message.stderr
    cli.ok("rmi", "changed:1")


def test_history(cli: DockerCLI) -> None:
    rows = cli.ok(
        "history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}", "busybox"
    ).splitlines()
    image_id = cli.ok("image", "inspect", "--format", "{{.Id}}", "busybox").strip()
    [(top, created_by, size)] = [r.split("|") for r in rows]  # one layer, from `atoll build`
    assert top == image_id and created_by == "atoll build" and size != "0B"
    missing = cli.run("history", "no-such-image")
    assert missing.returncode != 0 and "No such image: no-such-image" in missing.stderr


def test_system_df_shared_layers(cli: DockerCLI, dockerpy: docker.DockerClient) -> None:
    base = factory.layer(factory.directory("bin"), factory.file("bin/base", b"b" * 5000))
    one = factory.Image([base, factory.layer(factory.file("one", b"1" * 300))], tags=["shared:one"])
    two = factory.Image([base, factory.layer(factory.file("two", b"2" * 700))], tags=["shared:two"])
    loaded = _run_input(cli, "load", data=factory.pack(factory.docker_save(one, two)))
    assert loaded.returncode == 0, loaded.stderr
    try:
        usage = dockerpy.df()
        by_tag = {t: i for i in usage["Images"] for t in i["RepoTags"]}
        assert by_tag["shared:one"]["SharedSize"] == 5000 == by_tag["shared:two"]["SharedSize"]
        assert by_tag["shared:one"]["Size"] == 5300 and by_tag["shared:two"]["Size"] == 5700
        assert by_tag["busybox:latest"]["SharedSize"] == 0
        # The shared layer counts once in the total.
        total = sum(i["Size"] for i in usage["Images"] if i["Id"] not in (one.id, two.id))
        assert usage["LayersSize"] == total + 5000 + 300 + 700
        history = dockerpy.api.history("shared:two")
        assert [h["Size"] for h in history] == [700, 5000]
    finally:
        cli.ok("rmi", "shared:one", "shared:two")


def test_system_df(cli: DockerCLI, dockerpy: docker.DockerClient) -> None:
    cli.ok("create", "--name", "df-user", "busybox", "true")
    try:
        usage = dockerpy.df()
        images = {tuple(i["RepoTags"]): i for i in usage["Images"]}
        busybox = next(i for tags, i in images.items() if "busybox:latest" in tags)
        assert busybox["Containers"] >= 1 and busybox["Size"] > 0
        assert usage["LayersSize"] >= busybox["Size"]
        assert any("/df-user" in c["Names"] for c in usage["Containers"])
        assert usage["BuildCache"] == []
        text = cli.ok("system", "df", "--format", "{{.Type}} {{.TotalCount}}")
        assert "Images" in text and "Containers" in text and "Build Cache 0" in text
        with pytest.raises(docker.errors.APIError, match="type"):
            dockerpy.api._result(
                dockerpy.api._get(dockerpy.api._url("/system/df"), params={"type": "x"}), True
            )
    finally:
        cli.ok("rm", "df-user")


def test_save_through_docker_py(dockerpy: docker.DockerClient) -> None:
    image = dockerpy.images.get("busybox")
    data = b"".join(image.save(named=True))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    [again] = dockerpy.images.load(data)
    assert again.id == image.id
