"""What makes `docker run --rm` fast must not change what it does: a --rm container's writable layer
is volatile (no syncfs at unmount) and only its; removal leaves nothing behind on the host; output
written just before the exit still reaches the attached client."""

from __future__ import annotations

from tests.docker.conftest import DockerCLI
from tests.e2e.cloud import Cloud


def _root_options(mountinfo: str) -> set[str]:
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if fields[4] == "/":
            return set(fields[-1].split(","))
    raise AssertionError(f"no root mount in {mountinfo!r}")


def test_only_a_rm_container_has_a_volatile_writable_layer(cli: DockerCLI) -> None:
    volatile = {"volatile", "fsync=volatile"}
    assert _root_options(cli.ok("run", "--rm", "busybox", "cat", "/proc/self/mountinfo")) & volatile
    name = "kept-layer"
    try:
        assert (
            not _root_options(cli.ok("run", "--name", name, "busybox", "cat", "/proc/self/mountinfo"))
            & volatile
        )
    finally:
        cli.ok("rm", "-f", name)


def test_rm_leaves_no_instance_directory(cli: DockerCLI, cloud: Cloud) -> None:
    cid = cli.ok("create", "busybox", "true").strip()
    instance_dir = cloud.data_dir / "instances" / cid
    assert instance_dir.is_dir()
    cli.ok("rm", cid)
    assert not instance_dir.exists()
    assert cli.ok("run", "--rm", "busybox", "true") == ""
    assert sorted(p.name for p in (cloud.data_dir / "instances").iterdir()) == []


def test_output_right_before_the_exit_reaches_the_client(cli: DockerCLI) -> None:
    for _ in range(5):
        assert cli.ok("run", "--rm", "busybox", "sh", "-c", "seq 1 200; echo last").splitlines()[-1] == "last"
