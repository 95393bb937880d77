"""Time as the controller stores it: RFC 3339 text in UTC, parsed leniently (the agent reports
nanoseconds, Python keeps microseconds)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from atoll.model.clock import utcnow

_FRACTION = re.compile(r"\.(\d+)")


def now_iso() -> str:
    return utcnow()


def parse_iso(value: str) -> datetime | None:
    if not value:
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip(), count=1)
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_between(start: str, end: str) -> float:
    """Duration of a run; 0 when either end is unknown, so an unknown run counts as a quick one."""
    a, b = parse_iso(start), parse_iso(end)
    if a is None or b is None:
        return 0.0
    return max(0.0, (b - a).total_seconds())
