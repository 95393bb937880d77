"""Timestamps as they appear on the wire: RFC 3339, UTC, with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> str:
    return to_rfc3339(datetime.now(UTC))


def to_rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def from_timestamp(seconds: float) -> str:
    return to_rfc3339(datetime.fromtimestamp(seconds, UTC))


def human_duration(seconds: float) -> str:
    """Docker's go-units ``HumanDuration`` ("Less than a second", "About a minute", "3 hours", ...), which
    ``docker ps`` and ``atoll ps`` show in their STATUS columns. Hours round half up, as Docker's do."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(s / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"
