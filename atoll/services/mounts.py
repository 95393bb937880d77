"""Checking the mounts of a new instance. Pure: no database, no filesystem.

Rules (Docker's, where Docker has one):
- A destination is absolute; it is normalized (``/data/`` and ``/data/./x/..`` are ``/data``); it is
  not ``/`` and not ``/proc``, ``/sys`` or below them (the runtime owns those); two mounts never share
  one. The image's VOLUME paths that no mount covers become anonymous volumes.
- A volume's source is a volume name (made if missing) or empty (a new anonymous volume).
- A bind source is an absolute path on the host, allowed by the cloud's bind-mount policy
  (``ATOLL_BIND_MOUNTS``: ``allow``, ``deny``, or a comma-separated list of host directories under
  which bind sources must lie). Whether it exists is for the host to say.
- tmpfs has no source; only tmpfs takes a size and a mode; only a volume takes ``no_copy``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from atoll.model.errors import InvalidInput
from atoll.model.volume import MountSpec, MountType
from atoll.schemas import InstanceMount, MountRequest
from atoll.schemas_volumes import VOLUME_NAME

MAX_MOUNTS = 64
RESERVED = ("/proc", "/sys")
_VOLUME_NAME = re.compile(VOLUME_NAME)


@dataclass(frozen=True)
class BindPolicy:
    """Which host paths instances may bind-mount. ``prefixes`` None means any path."""

    allowed: bool = True
    prefixes: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> BindPolicy:
        value = text.strip()
        if value in ("", "allow"):
            return cls()
        if value == "deny":
            return cls(allowed=False)
        prefixes = tuple(posixpath.normpath(p.strip()) for p in value.split(",") if p.strip())
        bad = [p for p in prefixes if not p.startswith("/")]
        if bad or not prefixes:
            raise ValueError(f"ATOLL_BIND_MOUNTS: expected allow, deny or absolute directories, got {text!r}")
        return cls(prefixes=prefixes)

    def check(self, source: str, field: str) -> None:
        if not self.allowed:
            raise InvalidInput(f"{field}: bind mounts are not allowed on this cloud")
        if self.prefixes is None:
            return
        if not any(_under(source, prefix) for prefix in self.prefixes):
            allowed = ", ".join(self.prefixes)
            raise InvalidInput(
                f"{field}: {source} is not under a directory allowed for bind mounts ({allowed})"
            )


@dataclass(frozen=True)
class PlannedMount:
    """A checked mount; for volumes ``source`` is still a name ("" for a new anonymous volume)."""

    type: MountType
    destination: str
    source: str = ""
    readonly: bool = False
    copy_up: bool = True
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def destination(text: str, field: str) -> str:
    if "\x00" in text:
        raise InvalidInput(f"{field}: must not contain NUL bytes")
    if not text.startswith("/"):
        raise InvalidInput(f"{field}: {text!r} is not an absolute path")
    path = posixpath.normpath(text)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if path == "/":
        raise InvalidInput(f"{field}: cannot mount over /")
    if path == "/dev":
        raise InvalidInput(f"{field}: cannot mount over /dev, which the runtime provides")
    for reserved in RESERVED:
        if _under(path, reserved):
            raise InvalidInput(f"{field}: {path} is inside {reserved}, which the runtime provides")
    return path


def _check_one(request: MountRequest, i: int, policy: BindPolicy) -> PlannedMount:
    field = f"mounts[{i}]"
    dest = destination(request.destination, f"{field}.destination")
    kind = MountType(request.type)
    if kind != MountType.TMPFS and (request.tmpfs_size is not None or request.tmpfs_mode is not None):
        raise InvalidInput(f"{field}: tmpfs_size and tmpfs_mode apply to tmpfs mounts only")
    if kind != MountType.VOLUME and request.no_copy:
        raise InvalidInput(f"{field}.no_copy: applies to volume mounts only")
    if kind == MountType.VOLUME:
        if request.source and not _VOLUME_NAME.match(request.source):
            raise InvalidInput(
                f"{field}.source: {request.source!r} is not a volume name "
                "(letters, digits, '_', '.', '-'; a bind mount needs an absolute path)"
            )
        return PlannedMount(
            kind, dest, source=request.source, readonly=request.read_only, copy_up=not request.no_copy
        )
    if kind == MountType.BIND:
        source = request.source
        if "\x00" in source:
            raise InvalidInput(f"{field}.source: must not contain NUL bytes")
        if not source.startswith("/"):
            raise InvalidInput(f"{field}.source: a bind mount needs an absolute host path, got {source!r}")
        source = posixpath.normpath(source)
        policy.check(source, f"{field}.source")
        return PlannedMount(kind, dest, source=source, readonly=request.read_only)
    if request.source:
        raise InvalidInput(f"{field}.source: a tmpfs mount has no source")
    return PlannedMount(
        kind,
        dest,
        readonly=request.read_only,
        tmpfs_size=request.tmpfs_size,
        tmpfs_mode=request.tmpfs_mode,
    )


def plan_mounts(
    requests: Sequence[MountRequest], image_volumes: Sequence[str], policy: BindPolicy
) -> list[PlannedMount]:
    """The requested mounts, checked, then an anonymous volume for each image VOLUME left uncovered."""
    if len(requests) > MAX_MOUNTS:
        raise InvalidInput(f"mounts: at most {MAX_MOUNTS} mounts per instance")
    planned: list[PlannedMount] = []
    seen: dict[str, int] = {}
    for i, request in enumerate(requests):
        mount = _check_one(request, i, policy)
        if mount.destination in seen:
            raise InvalidInput(
                f"mounts[{i}].destination: {mount.destination} is already mounts[{seen[mount.destination]}]"
            )
        seen[mount.destination] = i
        planned.append(mount)
    for path in sorted(image_volumes):
        dest = destination(path, "image Volumes")
        if dest not in seen:
            seen[dest] = len(planned)
            planned.append(PlannedMount(MountType.VOLUME, dest))
    return planned


def image_volumes(config: dict[str, object]) -> list[str]:
    """The VOLUME paths of an image config (OCI ``Volumes``: a map of path to ``{}``)."""
    volumes = config.get("Volumes")
    return sorted(volumes) if isinstance(volumes, dict) else []


def mount_view(mount: MountSpec) -> InstanceMount:
    return InstanceMount(
        type=mount.type,
        name=mount.name,
        source=mount.source,
        destination=mount.destination,
        rw=not mount.readonly,
        tmpfs_size=mount.tmpfs_size,
        tmpfs_mode=mount.tmpfs_mode,
    )
