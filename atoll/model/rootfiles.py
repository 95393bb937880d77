"""What the files of an instance's root filesystem look like from outside: a path's stat (Docker's
``X-Docker-Container-Path-Stat``) and the changes of its writable layer (``docker diff``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class PathStat:
    name: str
    size: int
    mode: int
    """Go's ``os.FileMode``: permission bits plus type bits (``1 << 31`` a directory, ...), as Docker."""
    mtime: str
    """RFC 3339 with nanoseconds."""
    link_target: str = ""
    """For a symlink: where it leads, resolved inside the root filesystem."""


class ChangeKind(enum.IntEnum):
    """Docker's numbering."""

    MODIFIED = 0
    ADDED = 1
    DELETED = 2


@dataclass(frozen=True)
class FileChange:
    path: str
    kind: ChangeKind
