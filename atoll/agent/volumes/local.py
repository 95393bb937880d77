"""The local volume driver: a volume is a directory on the host that uses it.

``DATA/volumes`` (mode 0700: no host user may walk into tenants' data) holds ``<volume id>/_data``,
bind-mounted into instances. Directories are named by the volume's id, never its name: names are per
project and may be reused after a removal, ids are not. A directory is made when an instance on this
host first uses the volume and removed when the controller removes the volume, so it survives the
instances, the agent and the controller.

Copy-up (Docker's behaviour): when a volume is empty and the image has a directory where it is
mounted, the image's content (ownership, modes, symlinks, hard links, xattrs) is copied in before the
instance first starts, and the volume's root takes that directory's owner and mode. The source is
resolved inside the image's root (``rootpath``), so an image's symlinks cannot point the copy at the
host, and it happens before the container runs, so nothing inside can race it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
from pathlib import Path

from atoll.agent.runtime.rootpath import resolve_in_root
from atoll.model.errors import InvalidInput, RuntimeFailure

_VOLUME_ID = re.compile(r"^[0-9a-f]{64}$")
DATA = "_data"


class LocalVolumes:
    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)

    def path(self, volume_id: str) -> Path:
        """Where a volume's data is (or will be) on this host."""
        if not _VOLUME_ID.match(volume_id):
            raise InvalidInput(f"volume id {volume_id!r} is not a volume id")
        return self.root / volume_id / DATA

    def ensure(self, volume_id: str) -> Path:
        data = self.path(volume_id)
        if not self.root.is_dir():
            self.open()
        data.mkdir(mode=0o755, parents=True, exist_ok=True)
        return data

    def remove(self, volume_id: str) -> None:
        shutil.rmtree(self.root / self.path(volume_id).parent.name, ignore_errors=True)
        if (self.root / volume_id).exists():
            raise RuntimeFailure(f"volume {volume_id[:12]}: its data could not be removed")

    def known(self) -> set[str]:
        return (
            {p.name for p in self.root.iterdir() if _VOLUME_ID.match(p.name)} if self.root.is_dir() else set()
        )


async def copy_up(rootfs: Path, destination: str, volume: Path) -> bool:
    """Copy what the image has at ``destination`` into an empty ``volume``. Returns whether it did."""
    source = resolve_in_root(rootfs, destination)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or any(volume.iterdir()):
        return False
    if any(source.iterdir()):
        proc = await asyncio.create_subprocess_exec(
            "cp",
            "-a",
            "--",
            f"{source}/.",
            f"{volume}/",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeFailure(
                f"copying {destination} of the image into its volume: {err.decode().strip()}"
            )
    os.chown(volume, st.st_uid, st.st_gid)
    os.chmod(volume, stat.S_IMODE(st.st_mode))
    return True
