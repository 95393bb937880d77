"""What the agent does with an instance's mounts before the runtime sees them.

``prepare`` (at create): every bind source must exist on this host (only the host can tell), and
every volume gets its directory. ``populate`` (at the first start, once the root filesystem is mounted):
copy-up into empty volumes, recorded by a marker in the instance's directory so that later starts (a
restart policy, a user's start) never copy into a volume the instance itself emptied.
"""

from __future__ import annotations

import os
from pathlib import Path

from atoll.agent.volumes.local import LocalVolumes, copy_up
from atoll.model.errors import InvalidInput
from atoll.model.instance import InstanceSpec
from atoll.model.volume import MountType

POPULATED = "volumes-populated"


def prepare(spec: InstanceSpec, volumes: LocalVolumes, host: str) -> None:
    for i, mount in enumerate(spec.mounts):
        if mount.type == MountType.BIND and not os.path.exists(mount.source):
            raise InvalidInput(f"mounts[{i}].source: {mount.source} does not exist on host {host}")
        if mount.type == MountType.VOLUME:
            volumes.ensure(mount.source)


async def populate(spec: InstanceSpec, rootfs: Path, volumes: LocalVolumes, instance_dir: Path) -> None:
    marker = instance_dir / POPULATED
    if marker.exists():
        return
    for mount in spec.mounts:
        if mount.type == MountType.VOLUME and mount.copy_up:
            await copy_up(rootfs, mount.destination, volumes.ensure(mount.source))
    marker.touch()
