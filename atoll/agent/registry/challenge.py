"""``WWW-Authenticate`` challenges (RFC 7235), as registries send them on a 401.

A header may carry several challenges, each a scheme followed by comma-separated ``key=value`` or
``key="quoted value"`` parameters, e.g.::

    Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull"

Registries are untrusted, so parsing never fails: malformed pieces are skipped, and callers check that
what they need (a realm) is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lower-cased: ``bearer`` or ``basic``."""
    params: dict[str, str] = field(default_factory=dict)
    """Keys lower-cased; values as sent (unquoted)."""


def parse_challenges(header: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    pos, n = 0, len(header)
    while pos < n:
        pos = _skip(header, pos, " \t,")
        start = pos
        while pos < n and header[pos] in _TOKEN_CHARS:
            pos += 1
        scheme = header[start:pos]
        if not scheme:
            pos += 1  # a stray character: skip it
            continue
        params: dict[str, str] = {}
        while True:
            save = pos
            pos = _skip(header, pos, " \t")
            key_start = pos
            while pos < n and header[pos] in _TOKEN_CHARS:
                pos += 1
            key = header[key_start:pos]
            after_key = _skip(header, pos, " \t")
            if not key or after_key >= n or header[after_key] != "=":
                pos = save  # not a parameter: the next challenge (or a token68) starts here
                break
            pos = _skip(header, after_key + 1, " \t")
            value, pos = _value(header, pos)
            params.setdefault(key.lower(), value)
            pos = _skip(header, pos, " \t")
            if pos < n and header[pos] == ",":
                pos += 1
                continue
            break
        # A token68 (``Basic abc==``) or junk: skip to the next comma.
        if pos < n and header[pos] not in ",":
            rest = _skip(header, pos, " \t")
            if rest < n and header[rest] not in _TOKEN_CHARS | {","}:
                while pos < n and header[pos] != ",":
                    pos += 1
        challenges.append(Challenge(scheme.lower(), params))
    return challenges


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _value(text: str, pos: int) -> tuple[str, int]:
    n = len(text)
    if pos < n and text[pos] == '"':
        out = []
        pos += 1
        while pos < n and text[pos] != '"':
            if text[pos] == "\\" and pos + 1 < n:
                pos += 1
            out.append(text[pos])
            pos += 1
        return "".join(out), min(pos + 1, n)
    start = pos
    while pos < n and text[pos] not in ", \t":
        pos += 1
    return text[start:pos], pos
