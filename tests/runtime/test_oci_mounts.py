"""An instance's own mounts in config.json, as pure data."""

from __future__ import annotations

from pathlib import Path

from atoll.agent.runtime.cgroups import HostCgroups
from atoll.agent.runtime.oci import build_config, instance_mounts
from atoll.agent.runtime.users import ResolvedUser
from atoll.model.instance import InstanceSpec, ProcessSpec
from atoll.model.volume import MountSpec, MountType

MOUNTS = [
    MountSpec(type=MountType.VOLUME, destination="/etc", source="v" * 64, name="conf", readonly=True),
    MountSpec(type=MountType.BIND, destination="/srv/in", source="/host/in"),
    MountSpec(type=MountType.TMPFS, destination="/run", tmpfs_size=1 << 20, tmpfs_mode=0o750),
]


def test_entries() -> None:
    entries = instance_mounts(MOUNTS, lambda vid: Path("/data/volumes") / vid / "_data")
    assert entries == [
        {
            "destination": "/etc",
            "type": "bind",
            "source": f"/data/volumes/{'v' * 64}/_data",
            "options": ["rbind", "rprivate", "ro"],
        },
        {"destination": "/srv/in", "type": "bind", "source": "/host/in", "options": ["rbind", "rprivate"]},
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "size=1048576", "mode=750"],
        },
    ]


def test_etc_files_land_on_a_volume_mounted_at_etc() -> None:
    spec = InstanceSpec(
        id="0123456789abcdef", name="w", project="p", image_id="x", layers=[], process=ProcessSpec(args=["a"])
    )
    config = build_config(
        spec,
        rootfs=Path("/r"),
        init_binary=Path("/init"),
        user=ResolvedUser(0, 0, [], "/root"),
        cgroups_path="/a/b",
        mounts=[("/etc/hosts", Path("/i/hosts"))],
        host=HostCgroups(version=2, swap_accounting=True),
        user_mounts=instance_mounts(MOUNTS, lambda vid: Path("/v") / vid),
    )
    order = [m["destination"] for m in config["mounts"]]
    assert order.index("/etc") < order.index("/etc/hosts")
    assert order.index("/dev") < order.index("/etc") and order[-1] == "/srv/in"
