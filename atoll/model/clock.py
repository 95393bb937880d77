"""Timestamps as they appear on the wire: RFC 3339, UTC, with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> str:
    return to_rfc3339(datetime.now(UTC))


def to_rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def from_timestamp(seconds: float) -> str:
    return to_rfc3339(datetime.fromtimestamp(seconds, UTC))
