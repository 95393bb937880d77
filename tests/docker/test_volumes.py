"""Docker volumes, binds and tmpfs through Atoll's Docker API, with the real docker CLI and docker-py."""

from __future__ import annotations

import json
from pathlib import Path

import docker

from tests.docker.conftest import DockerCLI
from tests.e2e.cloud import Cloud


def test_volume_create_ls_inspect_rm(cli: DockerCLI) -> None:
    assert cli.ok("volume", "create", "--label", "team=a", "dv-a").strip() == "dv-a"
    vol = json.loads(cli.ok("volume", "inspect", "dv-a"))[0]
    assert vol["Name"] == "dv-a" and vol["Driver"] == "local" and vol["Labels"] == {"team": "a"}
    assert vol["Scope"] == "local" and vol["CreatedAt"]
    assert "dv-a" in cli.ok("volume", "ls", "-q").split()
    assert cli.ok("volume", "ls", "-q", "--filter", "label=team=a").split() == ["dv-a"]
    assert cli.ok("volume", "ls", "-q", "--filter", "label=team=b").split() == []
    bad = cli.run("volume", "create", "-d", "nfs-driver", "dv-b")
    assert bad.returncode != 0 and "river" in bad.stderr
    assert cli.ok("volume", "rm", "dv-a").strip() == "dv-a"
    missing = cli.run("volume", "inspect", "dv-a")
    assert missing.returncode != 0 and "no such volume" in missing.stderr
    assert cli.run("volume", "rm", "-f", "dv-a").returncode == 0


def test_named_volume_shares_data_between_containers(cli: DockerCLI) -> None:
    cli.ok("run", "--rm", "-v", "dv-shared:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert cli.ok("run", "--rm", "-v", "dv-shared:/d:ro", "busybox", "cat", "/d/f") == "kept\n"
    ro = cli.run("run", "--rm", "-v", "dv-shared:/d:ro", "busybox", "sh", "-c", "echo x > /d/g")
    assert ro.returncode != 0
    cid = cli.ok("create", "--mount", "type=volume,source=dv-shared,target=/m", "busybox", "true").strip()
    try:
        mounts = json.loads(cli.ok("inspect", cid))[0]["Mounts"]
        assert mounts[0]["Type"] == "volume" and mounts[0]["Name"] == "dv-shared"
        assert mounts[0]["Destination"] == "/m" and mounts[0]["RW"] and mounts[0]["Driver"] == "local"
        busy = cli.run("volume", "rm", "dv-shared")
        assert busy.returncode != 0 and "in use" in busy.stderr
        assert "dv-shared" not in cli.ok("volume", "ls", "-q", "--filter", "dangling=true").split()
    finally:
        cli.ok("rm", "-f", cid)
    assert cli.ok("volume", "rm", "dv-shared").strip() == "dv-shared"


def test_bind_mount_and_tmpfs(cli: DockerCLI, cloud: Cloud) -> None:
    host_dir = cloud.base / "dv-bind"
    host_dir.mkdir()
    (host_dir / "in").write_text("from-host\n")
    out = cli.ok(
        "run", "--rm", "-v", f"{host_dir}:/x", "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c",
        "cat /x/in; echo back > /x/out; grep /scratch /proc/mounts",
    )  # fmt: skip
    lines = out.split("\n")
    assert lines[0] == "from-host" and "tmpfs" in lines[1] and "size=1024k" in lines[1]
    assert (host_dir / "out").read_text() == "back\n"
    cid = cli.ok("create", "-v", f"{host_dir}:/x:ro", "busybox", "true").strip()
    try:
        (m,) = json.loads(cli.ok("inspect", cid))[0]["Mounts"]
        assert (m["Type"], m["Source"], m["Destination"], m["RW"]) == ("bind", str(host_dir), "/x", False)
        assert m["Propagation"] == "rprivate"
    finally:
        cli.ok("rm", "-f", cid)


def test_anonymous_volume_and_prune(cli: DockerCLI) -> None:
    cid = cli.ok("create", "-v", "/anon", "busybox", "true").strip()
    (m,) = json.loads(cli.ok("inspect", cid))[0]["Mounts"]
    assert m["Type"] == "volume" and m["Destination"] == "/anon" and m["Name"]
    cli.ok("rm", cid)
    assert m["Name"] in cli.ok("volume", "prune", "-f")
    assert m["Name"] not in cli.ok("volume", "ls", "-q").split()


def test_dockerpy_volumes(dockerpy: docker.DockerClient, tmp_path: Path) -> None:
    vol = dockerpy.volumes.create("dv-py", labels={"k": "v"})
    try:
        assert dockerpy.volumes.get("dv-py").attrs["Labels"] == {"k": "v"}
        out = dockerpy.containers.run(
            "busybox",
            ["sh", "-c", "echo py > /v/f && cat /v/f"],
            volumes={"dv-py": {"bind": "/v"}},
            remove=True,
        )
        assert out == b"py\n"
        assert [v.name for v in dockerpy.volumes.list(filters={"label": "k=v"})] == ["dv-py"]
    finally:
        vol.remove(force=True)
