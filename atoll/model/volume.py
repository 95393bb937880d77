"""Mounts of an instance as the controller hands them to a host: volumes, bind mounts and tmpfs.

Everything is decided by the controller before the host sees it: which volume (by id, never by a
name a host could confuse across projects), whether the policy allows a bind mount, the tmpfs size in
bytes. The host only checks what only it can know (does a bind source exist here) and makes the mounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MountType(StrEnum):
    VOLUME = "volume"
    """A volume of the instance's project; ``source`` is the volume's id."""
    BIND = "bind"
    """A path of the host; ``source`` is absolute."""
    TMPFS = "tmpfs"
    """Memory-backed, private to the instance, empty at each start."""


@dataclass(frozen=True)
class MountSpec:
    type: str
    """``MountType``."""
    destination: str
    """Absolute and normalized, never ``/``, never under /proc or /sys."""
    source: str = ""
    name: str = ""
    """The volume's name as its project knows it (for volumes)."""
    readonly: bool = False
    copy_up: bool = True
    """Volumes only: an empty volume first receives what the image has at ``destination`` (Docker's
    behaviour; ``nocopy`` turns it off)."""
    tmpfs_size: int | None = None
    """Bytes; None is the kernel's default (half the RAM)."""
    tmpfs_mode: int | None = None
    """Permission bits of the tmpfs root; None is 1777, as in Docker."""
