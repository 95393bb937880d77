"""Volumes, bind mounts and tmpfs end to end: `atoll up` in a subprocess, busybox, the CLI and the SDK."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from atoll.agent.images.starter import busybox_rootfs_tar
from atoll.client import AtollAPI, AtollError
from tests.e2e.cloud import Cloud
from tests.e2e.helpers import wait_for

RUN_FAILED = 125


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def sh(cloud: Cloud, script: str, *opts: str, project: str = "default") -> subprocess.CompletedProcess[bytes]:
    """Run ``sh -c script`` in a new busybox instance in the foreground, removed afterwards."""
    return cloud.cli("--project", project, "run", "--rm", *opts, "busybox", "sh", "-c", script)


def volume_dir(cloud: Cloud, volume_id: str) -> Path:
    return cloud.data_dir / "volumes" / volume_id


@pytest.fixture
def api(cloud: Cloud) -> AtollAPI:
    return cloud.api()


def test_named_volume_outlives_instances_and_restarts(cloud: Cloud, api: AtollAPI) -> None:
    assert ok(cloud.cli("volume", "create", "notes", "--label", "team=blue")).strip() == "notes"
    ok(sh(cloud, "echo kept > /data/note", "-v", "notes:/data"))
    assert ok(sh(cloud, "cat /data/note", "-v", "notes:/data")) == "kept\n"
    vol = api.inspect_volume("notes")
    assert vol.labels == {"team": "blue"} and not vol.anonymous and vol.used_by == []
    assert (volume_dir(cloud, vol.id) / "_data" / "note").read_text() == "kept\n"
    assert (cloud.data_dir / "volumes").stat().st_mode & 0o777 == 0o700

    # Read-only is enforced by the kernel.
    denied = sh(cloud, "echo x > /data/other", "-v", "notes:/data:ro")
    assert denied.returncode != 0 and b"Read-only file system" in denied.stderr

    # The data survives the control plane going away (kill -9) and coming back.
    cloud.kill9()
    cloud.start()
    assert ok(sh(cloud, "cat /data/note", "--mount", "type=volume,src=notes,dst=/data,readonly")) == "kept\n"

    # In use (even by a stopped instance): refused, with or without -f, naming the instance.
    ok(cloud.cli("run", "-d", "--name", "holder", "-v", "notes:/data", "busybox", "true"))
    wait_for(lambda: api.inspect_instance("holder").status == "exited", what="holder exits")
    assert api.inspect_volume("notes").used_by == ["holder"]
    for args in (("volume", "rm", "notes"), ("volume", "rm", "-f", "notes")):
        refused = cloud.cli(*args)
        assert refused.returncode == 1 and b"in use by instance(s) holder" in refused.stderr
    with pytest.raises(AtollError) as err:
        api.remove_volume("notes")
    assert err.value.status == 409
    inst = api.inspect_instance("holder")
    assert [(m.type, m.name, m.source, m.destination, m.rw) for m in inst.mounts] == [
        ("volume", "notes", vol.id, "/data", True)
    ]
    ok(cloud.cli("rm", "holder"))
    ok(cloud.cli("volume", "rm", "notes"))
    assert not volume_dir(cloud, vol.id).exists()
    assert "notes" not in ok(cloud.cli("volume", "ls", "-q"))


def test_bind_mounts_both_ways(cloud: Cloud, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host").write_text("hello container\n")
    out = sh(cloud, "cat /mnt/from-host && echo hello host > /mnt/from-container", "-v", f"{shared}:/mnt")
    assert ok(out) == "hello container\n"
    assert (shared / "from-container").read_text() == "hello host\n"
    denied = sh(cloud, "touch /mnt/nope", "--mount", f"type=bind,src={shared},dst=/mnt,ro")
    assert denied.returncode != 0 and not (shared / "nope").exists()


def test_tmpfs_is_tmpfs_with_its_size_limit(cloud: Cloud) -> None:
    script = "grep ' /scratch ' /proc/mounts; dd if=/dev/zero of=/scratch/big bs=1024 count=2048"
    result = sh(cloud, script, "--tmpfs", "/scratch:size=1m,mode=1770")
    line = result.stdout.decode().splitlines()[0].split()
    assert line[:3] == ["tmpfs", "/scratch", "tmpfs"]
    options = line[3].split(",")
    assert "size=1024k" in options and "mode=1770" in options and "nosuid" in options
    assert result.returncode != 0 and b"No space left on device" in result.stderr


def _layer(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _entry(
    name: str, kind: bytes, mode: int, uid: int, data: bytes | None = None
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = kind, mode, uid, uid
    return info, data


def import_app_image(cloud: Cloud, tmp_path: Path) -> None:
    """busybox plus /srv/app (owned by 1000, mode 0750, with content) declared as a VOLUME."""
    base = tmp_path / "base.tar"
    busybox_rootfs_tar(base)
    app = _layer(
        [
            _entry("srv", tarfile.DIRTYPE, 0o755, 0),
            _entry("srv/app", tarfile.DIRTYPE, 0o750, 1000),
            _entry("srv/app/config.txt", tarfile.REGTYPE, 0o640, 1000, b"from the image\n"),
            _entry("srv/app/sub", tarfile.DIRTYPE, 0o700, 1001),
        ]
    )
    layers = [base.read_bytes(), app]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin:/usr/bin:/sbin"], "Volumes": {"/srv/app": {}}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": ["app:vol"], "Layers": ["l0/layer.tar", "l1/layer.tar"]}]
    files = {"manifest.json": json.dumps(manifest).encode(), config_name: config_bytes}
    files.update({f"l{i}/layer.tar": layer for i, layer in enumerate(layers)})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "app.tar"
    archive.write_bytes(buf.getvalue())
    ok(cloud.cli("image", "import", str(archive)))


STAT = "stat -c '%u:%g %a %n' /srv/app /srv/app/config.txt /srv/app/sub && cat /srv/app/config.txt"
COPIED = (
    "1000:1000 750 /srv/app\n1000:1000 640 /srv/app/config.txt\n1001:1001 700 /srv/app/sub\nfrom the image\n"
)


def test_copy_up_and_image_volumes(cloud: Cloud, api: AtollAPI, tmp_path: Path) -> None:
    import_app_image(cloud, tmp_path)
    # The image's VOLUME gets an anonymous volume, filled from the image with owners and modes.
    ok(cloud.cli("run", "-d", "--name", "anon", "app:vol", "sh", "-c", f"{STAT} && echo more > /srv/app/new"))
    assert api.wait_instance("anon").exit_code == 0
    out = b"".join(data for stream, data in api.logs("anon") if stream == 1).decode()
    assert out == COPIED
    [mount] = api.inspect_instance("anon").mounts
    anon = api.inspect_volume(mount.source)
    assert anon.anonymous and anon.used_by == ["anon"] and mount.destination == "/srv/app"
    # A second start does not copy again into what the instance changed.
    data = volume_dir(cloud, anon.id) / "_data"
    assert (data / "new").read_text() == "more\n"
    # rm -v takes the anonymous volume with it.
    ok(cloud.cli("rm", "-v", "anon"))
    assert anon.name not in ok(cloud.cli("volume", "ls", "-q")) and not data.exists()

    # A new named volume over the same path is filled too; with nocopy it stays empty.
    assert ok(cloud.cli("run", "--rm", "-v", "appdata:/srv/app", "app:vol", "sh", "-c", STAT)) == COPIED
    listing = cloud.cli("run", "--rm", "-v", "empty:/srv/app:nocopy", "app:vol", "ls", "-A", "/srv/app")
    assert ok(listing) == ""
    # A volume that has content is never overwritten by a copy-up.
    ok(
        cloud.cli(
            "run", "--rm", "-v", "empty:/srv/app:nocopy", "app:vol", "sh", "-c", "echo x > /srv/app/own"
        )
    )
    assert ok(cloud.cli("run", "--rm", "-v", "empty:/srv/app", "app:vol", "ls", "/srv/app")) == "own\n"
    # --rm removed the anonymous ones; the named ones stay until removed.
    names = ok(cloud.cli("volume", "ls", "-q")).split()
    assert {"appdata", "empty"} <= set(names)
    ok(cloud.cli("volume", "rm", "appdata", "empty"))
    ok(cloud.cli("image", "rm", "app:vol"))


def test_prune_and_filters(cloud: Cloud, api: AtollAPI) -> None:
    ok(cloud.cli("volume", "create", "keep-used", "--label", "p=1"))
    ok(cloud.cli("volume", "create", "unused-named", "--label", "p=1"))
    ok(cloud.cli("run", "-d", "--name", "user", "-v", "keep-used:/a", "-v", "/b", "busybox", "sleep", "600"))
    ok(cloud.cli("run", "-d", "--name", "gone", "-v", "/c", "busybox", "true"))
    anon_gone = next(m.source for m in api.inspect_instance("gone").mounts)
    wait_for(lambda: api.inspect_instance("gone").status == "exited", what="gone exits")
    ok(cloud.cli("rm", "gone"))  # without -v: its anonymous volume stays, unused
    assert ok(cloud.cli("volume", "ls", "-q", "--filter", "dangling=true")).split() == sorted(
        ["unused-named", anon_gone]
    )
    assert ok(cloud.cli("volume", "ls", "-q", "-f", "label=p=1", "-f", "name=used")).split() == [
        "keep-used",
        "unused-named",
    ]
    pruned = ok(cloud.cli("volume", "prune", "-f"))
    assert anon_gone in pruned and "unused-named" not in pruned
    pruned = ok(cloud.cli("volume", "prune", "-a", "-f"))
    assert "unused-named" in pruned and "keep-used" not in pruned
    names = ok(cloud.cli("volume", "ls", "-q")).split()
    assert "keep-used" in names and len(names) == 2  # and the one /b of "user"
    ok(cloud.cli("rm", "-f", "-v", "user"))
    ok(cloud.cli("volume", "rm", "keep-used"))
    assert ok(cloud.cli("volume", "ls", "-q")) == ""


def test_projects_do_not_see_each_others_volumes(cloud: Cloud) -> None:
    ok(cloud.cli("project", "create", "vol-other"))
    ok(cloud.cli("volume", "create", "secret"))
    ok(sh(cloud, "echo classified > /v/file", "-v", "secret:/v"))
    other = ("--project", "vol-other")
    for args in (("volume", "inspect", "secret"), ("volume", "rm", "secret")):
        result = cloud.cli(*other, *args)
        assert result.returncode == 1 and b"not found" in result.stderr
    assert ok(cloud.cli(*other, "volume", "ls", "-q")) == ""
    # The same name in another project is another volume: empty.
    assert ok(sh(cloud, "ls -A /v", "-v", "secret:/v", project="vol-other")) == ""
    theirs = cloud.api("vol-other").inspect_volume("secret")
    assert theirs.id != cloud.api().inspect_volume("secret").id
    ok(cloud.cli(*other, "volume", "rm", "secret"))
    ok(cloud.cli("volume", "rm", "secret"))


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (("-v", "xx:relative"), b"mounts[1].destination: 'relative' is not an absolute path"),
        (("-v", "xx:/"), b"mounts[1].destination: cannot mount over /"),
        (("--tmpfs", "/proc/sneaky"), b"mounts[1].destination: /proc/sneaky is inside /proc"),
        (("-v", "xx:/sys"), b"inside /sys"),
        (("-v", "xx:/d", "-v", "yy:/d/"), b"mounts[2].destination: /d is already mounts[1]"),
        (("-v", "/no/such/dir:/d"), b"mounts[1].source: /no/such/dir does not exist on host"),
        (("--mount", "type=bind,src=relative,dst=/d"), b"mounts[1].source: a bind mount needs an absolute"),
        (
            ("--mount", "type=volume,src=bad/name,dst=/d"),
            b"mounts[1].source: 'bad/name' is not a volume name",
        ),
    ],
)
def test_bad_mounts_are_refused_and_leave_nothing(
    cloud: Cloud, api: AtollAPI, opts: tuple[str, ...], message: bytes
) -> None:
    before_volumes = {v.id for v in api.volumes()}
    before_instances = {i.id for i in api.instances(all=True)}
    result = cloud.cli("run", "-v", "made-on-the-way:/ok", *opts, "busybox", "true")
    assert result.returncode == RUN_FAILED, result.stderr
    assert message in result.stderr
    assert {v.id for v in api.volumes()} == before_volumes
    assert {i.id for i in api.instances(all=True)} == before_instances
