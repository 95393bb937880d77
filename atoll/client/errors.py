"""Errors raised by the SDK.

``AtollError`` carries what the API said (its stable ``code``, the ``message`` and the HTTP ``status``).
``AtollConnectionError`` means the API never answered, or the connection broke mid-stream.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

_CODE_BY_STATUS = {400: "invalid", 404: "not_found", 409: "conflict", 422: "invalid"}


class AtollError(Exception):
    """An error answer of the API (``{"error": {"code", "message"}}``)."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"AtollError(code={self.code!r}, message={self.message!r}, status={self.status})"


class AtollConnectionError(ConnectionError):
    """The API could not be reached, or it hung up before answering in full."""

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.url = url

    @classmethod
    def unreachable(cls, url: str, reason: object = None) -> AtollConnectionError:
        detail = f" ({reason})" if reason else ""
        return cls(f"cannot reach the Atoll API at {url} — is `make up` running?{detail}", url)

    @classmethod
    def lost(cls, url: str, reason: object) -> AtollConnectionError:
        return cls(f"lost the connection to the Atoll API at {url}: {reason}", url)


def error_from_body(status: int, body: bytes) -> AtollError:
    """Build the error for a 4xx/5xx answer, tolerating bodies that are not ours (proxies, framework 404s)."""
    default_code = _CODE_BY_STATUS.get(status, f"http_{status}")
    try:
        data: Any = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return AtollError(str(err.get("code") or default_code), err["message"], status)
        if "detail" in data:
            return AtollError(default_code, _detail_message(data["detail"]), status)
    text = body.decode("utf-8", "replace").strip()
    return AtollError(default_code, text or _reason(status), status)


def _detail_message(detail: Any) -> str:
    """FastAPI's own shape: a string, or a list of validation errors with a location each."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                msg = str(item.get("msg", item))
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def _reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"
