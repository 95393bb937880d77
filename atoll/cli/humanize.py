"""Docker's way of showing times, sizes, ids and statuses in tables."""

from __future__ import annotations

from datetime import UTC, datetime

from atoll.model.clock import human_duration
from atoll.schemas import Instance


def parse_time(text: str) -> datetime | None:
    """RFC 3339 (nanoseconds are cut to microseconds); ``None`` for an empty or unparsable value."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def since(text: str, now: datetime) -> str:
    when = parse_time(text)
    return human_duration((now - when).total_seconds()) if when else ""


def ago(text: str, now: datetime) -> str:
    return f"{since(text, now)} ago" if parse_time(text) else ""


def human_size(size: float) -> str:
    """Decimal units with three significant digits, as ``docker images``: 7.8MB, 133MB, 512B."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def short_id(ident: str) -> str:
    return ident.removeprefix("sha256:")[:12]


def instance_status(inst: Instance, now: datetime) -> str:
    """The STATUS column of ``docker ps``."""
    status = inst.status
    if status == "running":
        return f"Up {since(inst.started_at, now)}".rstrip()
    if status in ("exited", "restarting"):
        label = "Exited" if status == "exited" else "Restarting"
        code = f" ({inst.exit_code})" if inst.exit_code is not None else ""
        when = f" {ago(inst.finished_at, now)}" if parse_time(inst.finished_at) else ""
        return f"{label}{code}{when}"
    return status.capitalize()


def split_tag(repo_tag: str) -> tuple[str, str]:
    """``registry:5000/name:tag`` -> (``registry:5000/name``, ``tag``); a missing tag is ``<none>``."""
    slash = repo_tag.rfind("/")
    colon = repo_tag.rfind(":")
    if colon > slash:
        return repo_tag[:colon], repo_tag[colon + 1 :]
    return repo_tag, "<none>"


def ellipsize(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
