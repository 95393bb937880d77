"""Detach keys: the byte sequence (``ctrl-p,ctrl-q`` by default) that ends an attach without touching
the container. Applied to the stdin of TTY containers, where a person types; piped stdin of non-TTY
containers is passed through untouched, so binary input can never detach by accident."""

from __future__ import annotations

from atoll.api.docker.http import bad_request

DEFAULT = "ctrl-p,ctrl-q"
_CTRL_SPECIAL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_keys(text: str) -> bytes:
    """Docker's format: comma-separated ``ctrl-<x>`` or single characters."""
    out = bytearray()
    for part in (text or DEFAULT).split(","):
        key = part.strip().lower()
        if key.startswith("ctrl-") and len(key) == 6:
            c = key[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            if c in _CTRL_SPECIAL:
                out.append(_CTRL_SPECIAL[c])
                continue
        elif len(part) == 1:
            out.append(ord(part))
            continue
        raise bad_request(f"detachKeys: invalid key {part!r} (ctrl-<a-z@[\\]^_> or one character)")
    return bytes(out)


class DetachScanner:
    """Passes bytes through, holding back a possible start of the sequence until it is decided."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, whether the sequence was completed)."""
        out = bytearray()
        for byte in data:
            if byte == self.keys[len(self.held)]:
                self.held += bytes([byte])
                if len(self.held) == len(self.keys):
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if byte == self.keys[0]:
                self.held = bytes([byte])
            else:
                out.append(byte)
        return bytes(out), False
