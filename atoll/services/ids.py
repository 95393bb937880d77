"""Identifiers: 64 hex digits from the OS's CSPRNG, like Docker's container ids."""

from __future__ import annotations

import re
import secrets

_HEX = re.compile(r"^[0-9a-f]+$")


def new_id() -> str:
    return secrets.token_hex(32)


def is_hex(text: str) -> bool:
    return bool(_HEX.match(text))
