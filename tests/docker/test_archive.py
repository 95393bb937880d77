"""Container files through the real docker CLI and docker-py: docker cp out of and into running and
stopped containers (files and directories), symlink escapes contained, export, diff, size."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.docker.conftest import DOCKER, DockerCLI


def _wait_for(cli: DockerCLI, container: str, path: str) -> None:
    deadline = time.monotonic() + 20
    while cli.run("exec", container, "test", "-e", path).returncode != 0:
        assert time.monotonic() < deadline, f"{path} never appeared in {container}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def running(cli: DockerCLI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A running container with files in /tmp and a symlink aimed at a host directory."""
    secret = tmp_path_factory.mktemp("cp-secret")
    (secret / "secret.txt").write_text("host secret\n")
    script = (
        "echo hello > /tmp/f && mkdir -p /tmp/d/sub && echo deep > /tmp/d/sub/y && "
        f"ln -s /../../../../../../..{secret} /tmp/escdir && rm /bin/echo && touch /tmp/ready && sleep 600"
    )
    cli.ok("run", "-d", "--name", "cp-run", "busybox", "sh", "-c", script)
    try:
        _wait_for(cli, "cp-run", "/tmp/ready")
        yield "cp-run", secret
    finally:
        cli.run("rm", "-f", "cp-run")


def test_cp_out_file_and_directory(cli: DockerCLI, running: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = running
    cli.ok("cp", f"{name}:/tmp/f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "hello\n"
    cli.ok("cp", f"{name}:/tmp/d", str(tmp_path / "d"))
    assert (tmp_path / "d" / "sub" / "y").read_text() == "deep\n"
    # "dir/." copies the directory's contents, into a directory that exists.
    (tmp_path / "into").mkdir()
    cli.ok("cp", f"{name}:/tmp/d/.", str(tmp_path / "into"))
    assert sorted(p.name for p in (tmp_path / "into").iterdir()) == ["sub"]
    missing = cli.run("cp", f"{name}:/tmp/nope", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "/tmp/nope" in missing.stderr


def test_cp_in_file_and_directory(cli: DockerCLI, running: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = running
    (tmp_path / "in.txt").write_text("from the host\n")
    cli.ok("cp", str(tmp_path / "in.txt"), f"{name}:/tmp/in.txt")
    assert cli.ok("exec", name, "cat", "/tmp/in.txt") == "from the host\n"
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "b.txt").write_text("b\n")
    cli.ok("cp", str(tree), f"{name}:/tmp/")
    assert cli.ok("exec", name, "cat", "/tmp/tree/a/b.txt") == "b\n"


def test_cp_stopped_container(cli: DockerCLI, tmp_path: Path) -> None:
    cli.ok("create", "--name", "cp-stopped", "busybox", "cat", "/tmp/in.txt")
    try:
        (tmp_path / "in.txt").write_text("before start\n")
        cli.ok("cp", str(tmp_path / "in.txt"), "cp-stopped:/tmp/in.txt")
        assert cli.ok("start", "-a", "cp-stopped") == "before start\n"
        # Exited now: its writable layer is still readable, and writable.
        cli.ok("cp", "cp-stopped:/tmp/in.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "before start\n"
        (tmp_path / "in.txt").write_text("second run\n")
        cli.ok("cp", str(tmp_path / "in.txt"), "cp-stopped:/tmp/in.txt")
        assert cli.ok("start", "-a", "cp-stopped") == "second run\n"
        exported = tmp_path / "export.tar"
        cli.ok("export", "-o", str(exported), "cp-stopped")
        with tarfile.open(exported) as tar:
            names = set(tar.getnames())
            data = tar.extractfile("tmp/in.txt")
            assert data is not None and data.read() == b"second run\n"
        assert {"bin/busybox", "etc/passwd", "tmp"} <= names
        assert cli.ok("diff", "cp-stopped").splitlines() == ["C /tmp", "A /tmp/in.txt"]
    finally:
        cli.run("rm", "-f", "cp-stopped")


def test_symlink_escapes_stay_inside(
    cli: DockerCLI, running: tuple[str, Path], tmp_path: Path, dockerpy: docker.DockerClient
) -> None:
    name, secret = running
    # Reading through a link to a host path resolves inside the container, where there is nothing.
    out = cli.run("cp", f"{name}:/tmp/escdir/secret.txt", str(tmp_path / "stolen"))
    assert out.returncode != 0 and not (tmp_path / "stolen").exists()
    # Writing through it: the destination resolves inside the container too (and does not exist).
    (tmp_path / "pwn").write_text("pwned\n")
    cli.run("cp", str(tmp_path / "pwn"), f"{name}:/tmp/escdir/")
    # An archive whose member goes through the link is refused, not followed.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("escdir/pwn")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"pwned\n"))
    put = subprocess.run(
        [DOCKER, "cp", "-", f"{name}:/tmp"], env=cli.env(), input=buf.getvalue(), capture_output=True
    )
    assert put.returncode != 0
    assert sorted(p.name for p in secret.iterdir()) == ["secret.txt"]
    # The link itself goes out as a link (which the CLI then refuses to write, as it points outside).
    stream, stat = dockerpy.containers.get(name).get_archive("/tmp/escdir")
    assert stat["linkTarget"] == str(secret)  # resolved inside the container's root
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        [link] = tar.getmembers()
    assert link.issym() and link.name == "escdir"


def test_diff_and_size(cli: DockerCLI, running: tuple[str, Path], dockerpy: docker.DockerClient) -> None:
    name, _ = running
    changes = cli.ok("diff", name).splitlines()
    assert "A /tmp/f" in changes and "A /tmp/d/sub/y" in changes and "D /bin/echo" in changes
    assert "C /tmp" in changes
    container = dockerpy.containers.get(name)
    with_size = dockerpy.api.inspect_container(container.id)  # no size unless asked
    assert "SizeRw" not in with_size
    sized = dockerpy.api._result(
        dockerpy.api._get(dockerpy.api._url(f"/containers/{name}/json?size=1")), True
    )
    assert sized["SizeRw"] >= len("hello\ndeep\n") and sized["SizeRootFs"] > sized["SizeRw"]
    listed = dockerpy.api.containers(all=True, size=True, filters={"name": name})
    assert listed[0]["SizeRw"] == sized["SizeRw"]


def test_archive_through_docker_py(dockerpy: docker.DockerClient, running: tuple[str, Path]) -> None:
    name, _ = running
    container = dockerpy.containers.get(name)
    stream, stat = container.get_archive("/tmp/f")
    assert stat["name"] == "f" and stat["size"] == len("hello\n")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile("f")
        assert member is not None and member.read() == b"hello\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("put.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"py\n"))
    assert container.put_archive("/tmp", buf.getvalue())
    assert container.exec_run(["cat", "/tmp/put.txt"]).output == b"py\n"
    with pytest.raises(docker.errors.NotFound):
        container.get_archive("/no/such/path")
    _, dstat = container.get_archive("/tmp/d")
    assert dstat["mode"] & (1 << 31)  # a directory, as Go's os.FileMode says
