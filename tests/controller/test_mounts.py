"""Checking an instance's mounts (pure) and the bind-mount policy."""

from __future__ import annotations

import pytest

from atoll.model.errors import InvalidInput
from atoll.model.volume import MountType
from atoll.schemas import MountRequest
from atoll.services.mounts import BindPolicy, PlannedMount, destination, image_volumes, plan_mounts

ALLOW = BindPolicy()


def req(**fields: object) -> MountRequest:
    return MountRequest.model_validate(fields)


def test_destinations_are_normalized() -> None:
    assert destination("/data/", "f") == "/data"
    assert destination("//a/./b/../c", "f") == "/a/c"
    assert destination("/process", "f") == "/process"  # not /proc
    assert destination("/dev/shm", "f") == "/dev/shm"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("data", "f: 'data' is not an absolute path"),
        ("/", "f: cannot mount over /"),
        ("/x/..", "f: cannot mount over /"),
        ("/proc", "inside /proc"),
        ("/proc/sys/kernel", "inside /proc"),
        ("/sys/fs", "inside /sys"),
        ("/dev", "cannot mount over /dev"),
        ("/a\x00b", "NUL"),
    ],
)
def test_bad_destinations(path: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("/", "/")):
        destination(path, "f")


def test_plan_keeps_order_and_adds_uncovered_image_volumes() -> None:
    planned = plan_mounts(
        [req(source="db", destination="/var/lib/db/"), req(type="tmpfs", destination="/run", tmpfs_size=10)],
        ["/var/lib/db", "/cache"],
        ALLOW,
    )
    assert planned == [
        PlannedMount(MountType.VOLUME, "/var/lib/db", source="db"),
        PlannedMount(MountType.TMPFS, "/run", tmpfs_size=10),
        PlannedMount(MountType.VOLUME, "/cache"),
    ]


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        (
            [req(destination="/a"), req(destination="/a/")],
            r"mounts\[1\].destination: /a is already mounts\[0\]",
        ),
        ([req(source="../etc", destination="/a")], r"mounts\[0\].source: '../etc' is not a volume name"),
        ([req(type="bind", source="etc", destination="/a")], r"mounts\[0\].source: a bind mount needs"),
        (
            [req(type="tmpfs", source="x", destination="/a")],
            r"mounts\[0\].source: a tmpfs mount has no source",
        ),
        ([req(destination="/a", tmpfs_size=1)], r"mounts\[0\]: tmpfs_size and tmpfs_mode apply to tmpfs"),
        ([req(type="bind", source="/h", destination="/a", no_copy=True)], r"mounts\[0\].no_copy"),
    ],
)
def test_bad_mounts_name_the_field(mounts: list[MountRequest], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        plan_mounts(mounts, [], ALLOW)


def test_bind_policy() -> None:
    bind = [req(type="bind", source="/srv/data/../data/x", destination="/a")]
    assert plan_mounts(bind, [], BindPolicy.parse("allow"))[0].source == "/srv/data/x"
    with pytest.raises(InvalidInput, match="bind mounts are not allowed"):
        plan_mounts(bind, [], BindPolicy.parse("deny"))
    assert plan_mounts(bind, [], BindPolicy.parse("/srv/data, /home"))[0].source == "/srv/data/x"
    with pytest.raises(InvalidInput, match=r"mounts\[0\].source: /srv/database is not under"):
        plan_mounts(
            [req(type="bind", source="/srv/database", destination="/a")], [], BindPolicy.parse("/srv/data")
        )
    with pytest.raises(InvalidInput, match="is not under"):
        plan_mounts(
            [req(type="bind", source="/srv/data/../../etc", destination="/a")],
            [],
            BindPolicy.parse("/srv/data"),
        )
    for bad in ("relative", ",", "/ok,rel"):
        with pytest.raises(ValueError, match="ATOLL_BIND_MOUNTS"):
            BindPolicy.parse(bad)


def test_image_volumes() -> None:
    assert image_volumes({"Volumes": {"/b": {}, "/a": {}}}) == ["/a", "/b"]
    assert image_volumes({}) == [] and image_volumes({"Volumes": None}) == []
