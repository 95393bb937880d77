"""Parsing of -v, --tmpfs and --mount: pure, Docker's syntax."""

from __future__ import annotations

import pytest
import typer

from atoll.cli.volopts import instance_mounts, parse_mount, parse_tmpfs, parse_volume
from atoll.schemas import MountRequest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/data", MountRequest(destination="/data")),
        ("cache:/data", MountRequest(source="cache", destination="/data")),
        ("cache:/data:ro", MountRequest(source="cache", destination="/data", read_only=True)),
        ("cache:/data:nocopy,rw", MountRequest(source="cache", destination="/data", no_copy=True)),
        ("/data:ro", MountRequest(destination="/data", read_only=True)),
        ("/srv/x:/data", MountRequest(type="bind", source="/srv/x", destination="/data")),
        ("/srv/x:/data:ro", MountRequest(type="bind", source="/srv/x", destination="/data", read_only=True)),
    ],
)
def test_volume_syntax(text: str, expected: MountRequest) -> None:
    assert parse_volume(text) == expected


@pytest.mark.parametrize(
    "text", ["a:b:c:d", "cache::/x", ":/x", "cache:/x:rx", "cache:/x:ro,rw", "/host:/x:nocopy"]
)
def test_bad_volume_syntax(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_volume(text)


def test_tmpfs_syntax() -> None:
    assert parse_tmpfs("/run") == MountRequest(type="tmpfs", destination="/run")
    assert parse_tmpfs("/run:size=64m,mode=1770,ro") == MountRequest(
        type="tmpfs", destination="/run", tmpfs_size=64 << 20, tmpfs_mode=0o1770, read_only=True
    )
    for bad in ("/run:size=lots", "/run:mode=9", "/run:exec=1"):
        with pytest.raises(typer.BadParameter):
            parse_tmpfs(bad)


def test_mount_syntax() -> None:
    assert parse_mount("type=bind,source=/h,target=/c,readonly") == MountRequest(
        type="bind", source="/h", destination="/c", read_only=True
    )
    assert parse_mount("src=v,dst=/c,volume-nocopy=true,ro=false") == MountRequest(
        source="v", destination="/c", no_copy=True
    )
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=1k,tmpfs-mode=700") == MountRequest(
        type="tmpfs", destination="/t", tmpfs_size=1024, tmpfs_mode=0o700
    )
    for bad in ("type=nfs,dst=/c", "src=v", "dst=/c,colour=blue", "dst=/c,readonly=maybe"):
        with pytest.raises(typer.BadParameter):
            parse_mount(bad)


def test_order_is_volumes_then_mounts_then_tmpfs() -> None:
    mounts = instance_mounts(["/a"], ["/c"], ["dst=/b"])
    assert [m.destination for m in mounts] == ["/a", "/b", "/c"]
