"""Words for a failed transfer, shared by the event loop's client and the layer worker processes
(which must not need httpx: ``bodies.py`` re-exports this)."""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
