"""Signal names as users write them (``TERM``, ``SIGKILL``, ``9``, ``SIGRTMIN+3``), canonicalized to the
``SIG...`` form that the agent receives. Linux numbering: the controller and its hosts run Linux."""

from __future__ import annotations

import signal

from atoll.model.errors import InvalidInput

_RTMIN = int(signal.SIGRTMIN)
_RTMAX = int(signal.SIGRTMAX)
_BY_NAME = {name: int(s) for name, s in signal.Signals.__members__.items() if not name.startswith("SIGRT")}
_BY_NUMBER = {int(s): s.name for s in signal.Signals if not s.name.startswith("SIGRT")}
# Prefer the conventional names where Linux has aliases.
_BY_NUMBER.update(
    {int(signal.SIGABRT): "SIGABRT", int(signal.SIGIO): "SIGIO", int(signal.SIGCHLD): "SIGCHLD"}
)


def _realtime_name(number: int) -> str:
    offset = number - _RTMIN
    return "SIGRTMIN" if offset == 0 else f"SIGRTMIN+{offset}"


def _parse(text: str) -> str | None:
    raw = text.strip().upper()
    if not raw:
        return None
    if raw.isdigit():
        number = int(raw)
        if number in _BY_NUMBER:
            return _BY_NUMBER[number]
        return _realtime_name(number) if _RTMIN <= number <= _RTMAX else None
    name = raw if raw.startswith("SIG") else "SIG" + raw
    if name in _BY_NAME:
        return _BY_NUMBER[_BY_NAME[name]]
    for base, anchor, sign in (("SIGRTMIN", _RTMIN, 1), ("SIGRTMAX", _RTMAX, -1)):
        if name == base:
            return _realtime_name(anchor)
        if name.startswith(base + ("+" if sign > 0 else "-")):
            offset = name[len(base) + 1 :]
            if offset.isdigit() and _RTMIN <= anchor + sign * int(offset) <= _RTMAX:
                return _realtime_name(anchor + sign * int(offset))
    return None


def canonical_signal(text: str, field: str = "signal") -> str:
    """``SIGTERM`` for "TERM", "sigterm" or "15"; raises InvalidInput naming ``field`` otherwise."""
    name = _parse(text)
    if name is None:
        raise InvalidInput(f"{field}: unknown signal {text!r}")
    return name
