"""Images through the CLI and the API: import a docker-save archive, build from a rootfs, tag, run, remove."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from tests.e2e.cloud import Cloud
from tests.e2e.helpers import output, run
from tests.images import factory


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def docker_save_archive(path: Path, base_layer: bytes, tag: str) -> None:
    """A `docker save` archive: the busybox layer plus a layer adding /hello.txt."""
    extra = _tar({"hello.txt": b"hello from a saved image\n"})
    layers = [base_layer, extra]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["cat", "/hello.txt"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [f"l{i}/layer.tar" for i in range(2)]}]
    files = {"manifest.json": json.dumps(manifest).encode(), config_name: config_bytes}
    files.update({f"l{i}/layer.tar": layer for i, layer in enumerate(layers)})
    path.write_bytes(_tar(files))


def busybox_layer() -> bytes:
    """A runnable one-file rootfs: the host's static busybox and a few applet links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "cat", "echo"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def test_import_run_tag_and_remove(cloud: Cloud, tmp_path: Path) -> None:
    archive = tmp_path / "saved.tar"
    docker_save_archive(archive, busybox_layer(), "example.com/team/hello:1.0")
    result = cloud.cli("image", "import", str(archive))
    assert result.returncode == 0, result.stderr
    listing = cloud.cli("image", "ls").stdout.decode()
    assert "example.com/team/hello" in listing and "1.0" in listing

    api = cloud.api()
    ref = run(api, image="example.com/team/hello:1.0")
    assert api.wait_instance(ref).exit_code == 0
    assert output(api, ref)[1] == b"hello from a saved image\n"

    assert cloud.cli("image", "tag", "example.com/team/hello:1.0", "hello:latest").returncode == 0
    assert api.inspect_image("hello").id == api.inspect_image("example.com/team/hello:1.0").id
    in_use = cloud.cli("image", "rm", api.inspect_image("hello").id)
    assert in_use.returncode != 0 and b"must be forced" in in_use.stderr  # several tags, as in Docker
    api.remove_instance(ref)
    assert cloud.cli("image", "rm", "hello").returncode == 0  # untag only
    assert cloud.cli("image", "rm", "example.com/team/hello:1.0").returncode == 0
    assert "example.com/team/hello" not in cloud.cli("image", "ls").stdout.decode()


def test_build_from_a_rootfs_directory(cloud: Cloud, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (rootfs / "bin" / "busybox").chmod(0o755)
    for applet in ("sh", "cat", "echo"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "motd").write_text("built here\n")
    result = cloud.cli("image", "build", "--tag", "built:1", "--cmd", '["cat", "/motd"]', str(rootfs))
    assert result.returncode == 0, result.stderr
    api = cloud.api()
    ref = run(api, image="built:1")
    assert api.wait_instance(ref).exit_code == 0
    assert output(api, ref)[1] == b"built here\n"
    api.remove_instance(ref)
    assert cloud.cli("image", "rm", "built:1").returncode == 0


def test_a_corrupt_archive_is_refused_and_leaves_nothing(cloud: Cloud, tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar"
    docker_save_archive(archive, busybox_layer(), "broken:1")
    data = bytearray(archive.read_bytes())
    archive.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    before = sorted(p.name for p in (cloud.data_dir / "images" / "layers").iterdir())
    result = cloud.cli("image", "import", str(archive))
    assert result.returncode != 0 and result.stderr
    assert "broken" not in cloud.cli("image", "ls").stdout.decode()
    assert sorted(p.name for p in (cloud.data_dir / "images" / "layers").iterdir()) == before


def test_import_oci_layout_directory_and_archive(cloud: Cloud, tmp_path: Path) -> None:
    image = factory.Image(
        layers=[busybox_layer(), factory.layer(factory.file("greeting", b"from an OCI layout\n"))],
        tags=["oci/hello:2.0"],
        cmd=["cat", "/greeting"],
        env=["PATH=/bin"],
    )
    members = factory.oci_layout(image, full_names=True)
    layout_dir = factory.unpack_to(members, tmp_path / "layout")
    result = cloud.cli("image", "import", str(layout_dir))
    assert result.returncode == 0, result.stderr
    api = cloud.api()
    ref = run(api, image="oci/hello:2.0")
    assert api.wait_instance(ref).exit_code == 0
    assert output(api, ref)[1] == b"from an OCI layout\n"
    api.remove_instance(ref)
    assert cloud.cli("image", "rm", "oci/hello:2.0").returncode == 0

    archive = tmp_path / "layout.tar"
    archive.write_bytes(factory.pack(members))
    result = cloud.cli("image", "import", str(archive))
    assert result.returncode == 0, result.stderr
    assert api.inspect_image("oci/hello:2.0").id == "sha256:" + image.id.split(":")[-1]
    assert cloud.cli("image", "rm", "oci/hello:2.0").returncode == 0
