"""Docker's mount options: ``-v``/``--volume``, ``--tmpfs`` and ``--mount``, parsed into requests.

Pure; errors are ``typer.BadParameter``. Only the syntax is checked here: the server checks the rest
(absolute destinations, duplicates, the bind-mount policy) and names the field.

- ``-v DST`` (a new anonymous volume), ``-v NAME:DST[:OPTS]``, ``-v /HOST:DST[:OPTS]``; OPTS is a
  comma-separated list of ``ro``, ``rw``, ``nocopy``.
- ``--tmpfs DST[:OPTS]``; OPTS: ``size=SIZE`` (64m, 1g), ``mode=OCTAL``, ``ro``, ``rw``.
- ``--mount type=volume|bind|tmpfs,src=..,dst=..`` plus ``readonly``, ``volume-nocopy``,
  ``tmpfs-size=..``, ``tmpfs-mode=..``.
"""

from __future__ import annotations

import typer

from atoll.cli.parsing import parse_memory
from atoll.schemas import MountRequest

_MODES = {"ro", "rw", "nocopy"}
_TRUE = {"", "1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def _modes(text: str, option: str) -> set[str]:
    modes = {m for m in text.split(",") if m}
    unknown = modes - _MODES
    if unknown:
        raise typer.BadParameter(f"{option}: unknown mode {sorted(unknown)[0]!r} (use ro, rw or nocopy)")
    if {"ro", "rw"} <= modes:
        raise typer.BadParameter(f"{option}: ro and rw exclude each other")
    return modes


def parse_volume(text: str) -> MountRequest:
    parts = text.split(":")
    if len(parts) > 3 or not all(parts):
        raise typer.BadParameter(f"invalid volume {text!r}: use [NAME|/HOST:]DEST[:ro|rw|nocopy]")
    modes: set[str] = set()
    source = ""
    if len(parts) == 3:
        source, dest, mode_text = parts
        modes = _modes(mode_text, f"volume {text!r}")
    elif len(parts) == 2 and parts[0].startswith("/") and set(parts[1].split(",")) <= _MODES:
        dest, modes = parts[0], _modes(parts[1], f"volume {text!r}")
    elif len(parts) == 2:
        source, dest = parts
    else:
        dest = parts[0]
    bind = source.startswith("/")
    if bind and "nocopy" in modes:
        raise typer.BadParameter(f"volume {text!r}: nocopy applies to volumes, not to bind mounts")
    return MountRequest(
        type="bind" if bind else "volume",
        source=source,
        destination=dest,
        read_only="ro" in modes,
        no_copy="nocopy" in modes,
    )


def _mode(text: str, option: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise typer.BadParameter(f"{option}: mode {text!r} is not an octal number") from None


def parse_tmpfs(text: str) -> MountRequest:
    dest, _, opts = text.partition(":")
    fields: dict[str, object] = {"type": "tmpfs", "destination": dest}
    for opt in (o for o in opts.split(",") if o):
        key, _, value = opt.partition("=")
        if key == "size":
            fields["tmpfs_size"] = parse_memory(value)
        elif key == "mode":
            fields["tmpfs_mode"] = _mode(value, f"tmpfs {text!r}")
        elif key in ("ro", "rw") and not value:
            fields["read_only"] = key == "ro"
        else:
            raise typer.BadParameter(f"tmpfs {text!r}: unknown option {opt!r} (use size=, mode=, ro, rw)")
    return MountRequest.model_validate(fields)


def _flag(key: str, value: str, option: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise typer.BadParameter(f"{option}: {key}={value!r} is not a boolean")


def parse_mount(text: str) -> MountRequest:
    option = f"mount {text!r}"
    fields: dict[str, object] = {"type": "volume"}
    for item in (i for i in text.split(",") if i):
        key, _, value = item.partition("=")
        key = key.strip().lower()
        if key == "type":
            if value not in ("volume", "bind", "tmpfs"):
                raise typer.BadParameter(f"{option}: type must be volume, bind or tmpfs, not {value!r}")
            fields["type"] = value
        elif key in ("src", "source"):
            fields["source"] = value
        elif key in ("dst", "destination", "target"):
            fields["destination"] = value
        elif key in ("ro", "readonly"):
            fields["read_only"] = _flag(key, value, option)
        elif key == "volume-nocopy":
            fields["no_copy"] = _flag(key, value, option)
        elif key == "tmpfs-size":
            fields["tmpfs_size"] = parse_memory(value)
        elif key == "tmpfs-mode":
            fields["tmpfs_mode"] = _mode(value, option)
        else:
            raise typer.BadParameter(f"{option}: unknown key {key!r}")
    if "destination" not in fields:
        raise typer.BadParameter(f"{option}: dst= (destination) is required")
    return MountRequest.model_validate(fields)


def instance_mounts(volumes: list[str], tmpfs: list[str], mounts: list[str]) -> list[MountRequest]:
    """In Docker's order: --volume, then --mount, then --tmpfs."""
    return [
        *(parse_volume(v) for v in volumes),
        *(parse_mount(m) for m in mounts),
        *(parse_tmpfs(t) for t in tmpfs),
    ]
