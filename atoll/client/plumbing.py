"""What the SDK's endpoint mixins share: the client's HTTP plumbing as a protocol, and the decoding of
answers into wire models (a malformed answer is a protocol error, never a pydantic traceback)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from atoll.client.errors import AtollConnectionError, AtollError

M = TypeVar("M", bound=BaseModel)


class ClientCore(Protocol):
    """The part of ``AtollAPI`` its mixins (networks, registry transfers) build on."""

    base_url: str
    _http: httpx.Client

    @property
    def _no_read_timeout(self) -> httpx.Timeout: ...

    def _path(self, *parts: str) -> str: ...

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | list[str]] | None = None,
        json: Any = None,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response: ...

    def _transport_error(self, exc: httpx.TransportError) -> AtollConnectionError: ...


def model_of(resp: httpx.Response, model: type[M]) -> M:
    try:
        return model.model_validate_json(resp.content)
    except ValidationError as exc:
        raise bad_answer(resp, exc) from exc


def models_of(resp: httpx.Response, model: type[M]) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_json(resp.content)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise bad_answer(resp, exc) from exc


def bad_answer(resp: httpx.Response, exc: ValidationError) -> AtollError:
    where = f"{resp.request.method} {resp.request.url.path}"
    return AtollError("protocol", f"unexpected answer to {where}: {exc}", resp.status_code)
