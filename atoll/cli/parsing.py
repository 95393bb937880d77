"""Parsing of docker-style option values. Pure functions; they raise ``typer.BadParameter``."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping

import typer

from atoll.schemas import RestartPolicyWire

_MEMORY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?b)?$", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
FILTER_KEYS = ("label", "name", "status")


def parse_memory(text: str, *, allow_unlimited: bool = False) -> int:
    """Docker's RAMInBytes: ``64m``, ``1g``, ``1.5GiB``, ``512kb``, ``1048576``; ``-1`` where allowed."""
    value = text.strip()
    if allow_unlimited and value == "-1":
        return -1
    match = _MEMORY.match(value)
    if not match:
        raise typer.BadParameter(f"invalid size {text!r}: use a number of bytes or a unit, as 64m or 1g")
    number, unit, _ = match.groups()
    return int(float(number) * _MULTIPLIERS[unit.lower()])


def parse_restart(text: str) -> RestartPolicyWire:
    """``no``, ``always``, ``unless-stopped``, ``on-failure`` or ``on-failure:N``."""
    name, sep, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise typer.BadParameter(
            f"invalid restart policy {name!r}: use no, always, unless-stopped, on-failure[:max-retries]"
        )
    if not sep:
        return RestartPolicyWire(name=name)
    if name != "on-failure":
        raise typer.BadParameter(f"a maximum retry count cannot be used with restart policy {name!r}")
    if not count.isdigit():
        raise typer.BadParameter(f"invalid maximum retry count {count!r}")
    return RestartPolicyWire(name=name, max_retries=int(count))


def parse_env(items: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """``KEY=VALUE`` passes as is; ``KEY`` alone takes its value from the local environment, and when it is
    not set there it goes as ``KEY``, which unsets the image's ``KEY`` (docker's rules)."""
    env = os.environ if environ is None else environ
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        if not key:
            raise typer.BadParameter(f"invalid environment variable {item!r}")
        out.append(f"{key}={env[key]}" if not sep and key in env else item)
    return out


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE``; ``KEY`` alone is an empty value, as in docker."""
    labels = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise typer.BadParameter(f"invalid label {item!r}")
        labels[key] = value
    return labels


def parse_filters(items: Iterable[str]) -> dict[str, list[str]]:
    """``key=value`` filters of ``ps``, grouped by key."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"bad format of filter {item!r} (expected name=value)")
        if key not in FILTER_KEYS:
            raise typer.BadParameter(f"invalid filter {key!r}; supported: {', '.join(FILTER_KEYS)}")
        filters.setdefault(key, []).append(value)
    return filters


def parse_argv(text: str) -> list[str]:
    """An image's Cmd or Entrypoint: a JSON array (exec form), or words split like a shell would."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError as exc:
            raise typer.BadParameter(f"invalid JSON array {text!r}: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise typer.BadParameter(f"{text!r} is not a JSON array of strings")
        return value
    try:
        return shlex.split(stripped)
    except ValueError as exc:
        raise typer.BadParameter(f"cannot split {text!r}: {exc}") from exc
