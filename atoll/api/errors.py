"""The one place where errors become HTTP responses, all shaped ``{"error": {"code", "message"}}``.

Domain errors map by type; request validation errors become 400 with the offending field named, so the
API answers bad input the same way whether pydantic or a service caught it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from atoll.model.errors import (
    AtollError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RegistryAuthError,
    RegistryError,
    RuntimeFailure,
    Unauthorized,
)
from atoll.schemas import ErrorBody, ErrorResponse

log = logging.getLogger(__name__)

STATUS: dict[type[AtollError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
    RuntimeFailure: 500,
    RegistryAuthError: 403,
    RegistryError: 502,
    Unauthorized: 401,
    Forbidden: 403,
}

HTTP_CODES = {400: "invalid", 404: "not_found", 405: "method_not_allowed", 409: "conflict"}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid input; the message names the field"},
    404: {"model": ErrorResponse, "description": "Not found"},
    409: {"model": ErrorResponse, "description": "Conflicts with the current state"},
}


def status_for(error: AtollError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def error_response(status: int, code: str, message: str) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status)


def field_name(loc: Sequence[int | str]) -> str:
    parts = list(loc)
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def validation_message(errors: Sequence[Any]) -> str:
    return "; ".join(f"{field_name(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors)


async def _atoll_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AtollError)
    status = status_for(exc)
    if status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return error_response(status, exc.code, exc.message)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, InvalidInput.code, validation_message(exc.errors()))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, str(exc.detail))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, AtollError.code, f"internal error: {type(exc).__name__}: {exc}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AtollError, _atoll_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
