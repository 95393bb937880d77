"""Wire schemas of volumes and instance mounts (native REST API). Part of ``atoll.schemas``, kept in a
module of its own so the volume shapes live together; ``atoll.schemas`` re-exports them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VOLUME_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}$"
"""Docker's rule for volume names (two characters at least)."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VolumeCreate(_Wire):
    name: str | None = Field(default=None, pattern=VOLUME_NAME, description="default: a random id")
    driver: str = Field(default="local", description="local: a directory on the host that uses it")
    labels: dict[str, str] = {}
    options: dict[str, str] = Field(default={}, description="driver options; see docs/volumes.md")


class Volume(_Wire):
    id: str
    name: str
    project: str
    driver: str
    labels: dict[str, str]
    options: dict[str, str]
    anonymous: bool
    """Made for an image's VOLUME or a mount without a source; ``rm --volumes`` removes it with its
    instance."""
    used_by: list[str]
    """Names of the instances (running or not) that mount it."""
    created_at: str


class VolumesPruned(_Wire):
    deleted: list[str] = []
    """Names of the removed volumes."""


class MountRequest(_Wire):
    """One mount of a new instance (``-v``, ``--tmpfs`` and ``--mount`` all become these)."""

    type: Literal["volume", "bind", "tmpfs"] = "volume"
    source: str = Field(
        default="",
        description="volume: its name (made if missing; empty: a new anonymous volume); "
        "bind: an absolute path on the host; tmpfs: empty",
    )
    destination: str = Field(min_length=1, description="absolute path in the instance")
    read_only: bool = False
    no_copy: bool = Field(default=False, description="volume: do not copy the image's content in")
    tmpfs_size: int | None = Field(default=None, gt=0, description="tmpfs: bytes")
    tmpfs_mode: int | None = Field(default=None, ge=0, le=0o7777, description="tmpfs: permission bits")


class InstanceMount(_Wire):
    """A mount as an instance shows it (what Docker's inspect needs: Type, Name, Source, Destination, RW)."""

    type: str
    name: str = ""
    """The volume's name (volumes only)."""
    source: str = ""
    """volume: the volume's id; bind: the host path; tmpfs: empty."""
    destination: str
    rw: bool
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None
