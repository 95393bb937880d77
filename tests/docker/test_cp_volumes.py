"""``docker cp`` follows mounts as dockerd does: into and out of named and anonymous volumes of stopped,
never-started and running containers, bind mounts, a running container's tmpfs; read-only mounts
refuse writes; no view mount is left behind."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import docker

from tests.docker.conftest import DockerCLI
from tests.e2e.cloud import Cloud


def _views_left(cloud: Cloud) -> list[str]:
    data = str(cloud.data_dir)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if data in line and "cp-view-" in line]


def test_cp_out_of_an_anonymous_volume_of_an_exited_container(
    cli: DockerCLI, cloud: Cloud, tmp_path: Path
) -> None:
    box = cli.ok(
        "create", "-v", "/vol1", "busybox", "sh", "-c", "echo in the volume > /vol1/data.txt"
    ).strip()
    try:
        cli.ok("start", "-a", box)
        cli.ok("cp", f"{box}:/vol1/data.txt", str(tmp_path / "out.txt"))
        assert (tmp_path / "out.txt").read_text() == "in the volume\n"
        cli.ok("cp", f"{box}:/vol1", str(tmp_path / "dir"))
        assert (tmp_path / "dir" / "data.txt").read_text() == "in the volume\n"
        missing = cli.run("cp", f"{box}:/vol1/nope", str(tmp_path / "nope"))
        assert missing.returncode != 0 and "/vol1/nope" in missing.stderr
    finally:
        cli.run("rm", "-fv", box)
    assert _views_left(cloud) == []


def test_cp_into_a_named_volume_before_the_first_start(cli: DockerCLI, cloud: Cloud, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("copied in\n")
    cli.ok("volume", "create", "cpvol")
    box = cli.ok("create", "-v", "cpvol:/data", "busybox", "sh", "-c", "cat /data/in.txt; ls /data").strip()
    try:
        cli.ok("cp", str(tmp_path / "in.txt"), f"{box}:/data/")
        assert cli.ok("start", "-a", box) == "copied in\nin.txt\n"
        # It is in the volume, not in the container: another container sees it.
        assert cli.ok("run", "--rm", "-v", "cpvol:/v", "busybox", "cat", "/v/in.txt") == "copied in\n"
        # A mount point the image lacks is made in the view (as the runtime makes it at start).
        other = cli.ok("create", "-v", "cpvol:/made/here", "busybox", "true").strip()
        cli.ok("cp", f"{other}:/made/here/in.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "copied in\n"
        cli.ok("rm", other)
    finally:
        cli.run("rm", "-f", box)
        cli.run("volume", "rm", "cpvol")
    assert _views_left(cloud) == []


def test_cp_with_a_running_container_sees_its_mounts(cli: DockerCLI, tmp_path: Path) -> None:
    bind = tmp_path / "bound"
    bind.mkdir()
    (bind / "host.txt").write_text("from a bind mount\n")
    (tmp_path / "in.txt").write_text("into tmpfs\n")
    cli.ok(
        "run", "-d", "--name", "cp-mounts", "-v", "cprun:/data", "-v", f"{bind}:/bound",
        "--tmpfs", "/scratch", "busybox", "sleep", "600",
    )  # fmt: skip
    try:
        cli.ok("exec", "cp-mounts", "sh", "-c", "echo live > /data/live.txt")
        cli.ok("cp", "cp-mounts:/data/live.txt", str(tmp_path / "live.txt"))
        assert (tmp_path / "live.txt").read_text() == "live\n"
        cli.ok("cp", "cp-mounts:/bound/host.txt", str(tmp_path / "host.txt"))
        assert (tmp_path / "host.txt").read_text() == "from a bind mount\n"
        cli.ok("cp", str(tmp_path / "in.txt"), "cp-mounts:/scratch/in.txt")
        assert cli.ok("exec", "cp-mounts", "cat", "/scratch/in.txt") == "into tmpfs\n"
        cli.ok("cp", str(tmp_path / "in.txt"), "cp-mounts:/data/in.txt")
        assert cli.ok("exec", "cp-mounts", "cat", "/data/in.txt") == "into tmpfs\n"
    finally:
        cli.run("rm", "-f", "cp-mounts")
        cli.run("volume", "rm", "cprun")


def test_read_only_mounts_refuse_cp_in(cli: DockerCLI, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("no\n")
    stopped = cli.ok("create", "-v", "cpro:/ro:ro", "busybox", "true").strip()
    cli.ok("run", "-d", "--name", "cp-ro", "-v", "cpro:/ro:ro", "busybox", "sleep", "600")
    try:
        for target in (stopped, "cp-ro"):
            refused = cli.run("cp", str(tmp_path / "in.txt"), f"{target}:/ro/in.txt")
            assert refused.returncode != 0, target
            assert "read-only" in refused.stderr.lower(), refused.stderr
        assert cli.ok("run", "--rm", "-v", "cpro:/v", "busybox", "ls", "/v") == ""
    finally:
        cli.run("rm", "-f", stopped, "cp-ro")
        cli.run("volume", "rm", "cpro")


def test_docker_py_archives_in_volumes(dockerpy: docker.DockerClient) -> None:
    """docker-py's own upstream ArchiveTest cases that use ``volumes=['/vol1']``."""
    api = dockerpy.api
    box = api.create_container("busybox", 'sh -c "echo The Maid > /vol1/data.txt"', volumes=["/vol1"])
    try:
        api.start(box)
        assert api.wait(box)["StatusCode"] == 0
        stream, stat = api.get_archive(box, "/vol1/data.txt")
        assert stat["name"] == "data.txt" and stat["size"] == len("The Maid\n")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile("data.txt")
            assert member is not None and member.read() == b"The Maid\n"
    finally:
        api.remove_container(box, force=True, v=True)
    reader = api.create_container("busybox", "cat /vol1/copied.txt", volumes=["/vol1"])
    try:
        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w") as tar:
            info = tarfile.TarInfo("copied.txt")
            info.size = 6
            tar.addfile(info, io.BytesIO(b"put!\n\n"))
        assert api.put_archive(reader, "/vol1", payload.getvalue())
        api.start(reader)
        api.wait(reader)
        assert api.logs(reader) == b"put!\n\n"
    finally:
        api.remove_container(reader, force=True, v=True)
