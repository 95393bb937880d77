"""Domain errors across the wire: the far side's ``AtollError`` is raised again, same class, same message.

Anything else that fails on the far side arrives as ``RuntimeFailure`` naming the peer, so a caller
never sees a transport exception it has no handler for.
"""

from __future__ import annotations

import json
from typing import Any

from atoll.model import errors
from atoll.model.errors import AtollError, RuntimeFailure


def _error_classes() -> dict[str, type[AtollError]]:
    found: dict[str, type[AtollError]] = {}
    todo: list[type[AtollError]] = [AtollError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


STATUS = {
    "not_found": 404,
    "conflict": 409,
    "invalid": 400,
    "bad_image": 400,
    "unauthorized": 401,
    "forbidden": 403,
}
"""HTTP statuses for the wire only; the native API keeps its own mapping."""


def error_body(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, AtollError):
        return {"type": type(exc).__name__, "message": exc.message}
    return {"type": "internal", "message": f"{type(exc).__name__}: {exc}"}


def error_status(exc: BaseException) -> int:
    return STATUS.get(exc.code, 500) if isinstance(exc, AtollError) else 500


def raise_error(body: dict[str, Any], peer: str) -> None:
    """Raise the error described by ``body`` (an ``error_body``), as its own class when we know it."""
    cls = _error_classes().get(str(body.get("type")))
    message = str(body.get("message", ""))
    if cls is None or not issubclass(cls, AtollError):
        raise RuntimeFailure(f"{peer}: {message}")
    raise cls(message)


def parse_error(data: bytes, status: int, peer: str) -> None:
    try:
        body = json.loads(data).get("error")
    except (ValueError, AttributeError):
        body = None
    if not isinstance(body, dict):
        raise RuntimeFailure(f"{peer}: HTTP {status}: {data[:200]!r}")
    raise_error(body, peer)


__all__ = ["error_body", "error_status", "errors", "parse_error", "raise_error"]
