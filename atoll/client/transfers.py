"""SDK methods for registries: pull and push (NDJSON progress streams), prune, and logins.

A mixin of ``AtollAPI``, kept apart so each module stays one concept; it only uses the client's HTTP
plumbing, described by ``_Client``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from pydantic import ValidationError

from atoll.client.errors import AtollError, error_from_body
from atoll.client.plumbing import ClientCore as _Client
from atoll.client.plumbing import model_of, models_of
from atoll.schemas import (
    Image,
    ImagePull,
    ImagePush,
    ImagesPruned,
    RegistryLogin,
    RegistryLoginView,
    TransferProgress,
)

ProgressHandler = Callable[[TransferProgress], None]
"""Called with every progress line of a pull or push, in order."""


class RegistryMethods:
    def pull_image(self: _Client, reference: str, progress: ProgressHandler | None = None) -> Image:
        """Pull ``reference`` (``NAME[:TAG]`` or ``NAME@sha256:...``) onto a host; returns the image."""
        body = ImagePull(reference=reference).model_dump(mode="json")
        last = _transfer(self, self._path("images", "pull"), body, progress)
        if last.image is None:
            raise AtollError("protocol", f"the pull of {reference} ended without an image")
        return last.image

    def push_image(self: _Client, reference: str, progress: ProgressHandler | None = None) -> str:
        """Push the local image ``reference`` to its registry; returns the manifest digest."""
        body = ImagePush(reference=reference).model_dump(mode="json")
        last = _transfer(self, self._path("images", "push"), body, progress)
        if last.digest is None:
            raise AtollError("protocol", f"the push of {reference} ended without a digest")
        return last.digest

    def prune_images(self: _Client, *, all: bool = False) -> ImagesPruned:
        params = {"all": "true"} if all else {}
        resp = self._request(
            "POST", self._path("images", "prune"), params=params, timeout=self._no_read_timeout
        )
        return ImagesPruned.model_validate_json(resp.content)

    def login(self: _Client, registry: str, username: str, password: str) -> RegistryLoginView:
        """Store a login for the project, after the registry accepted it."""
        body = RegistryLogin(registry=registry, username=username, password=password).model_dump(mode="json")
        return model_of(self._request("POST", self._path("registry-logins"), json=body), RegistryLoginView)

    def logout(self: _Client, registry: str) -> None:
        self._request("DELETE", self._path("registry-logins", registry))

    def registry_logins(self: _Client) -> list[RegistryLoginView]:
        return models_of(self._request("GET", self._path("registry-logins")), RegistryLoginView)


def _transfer(api: _Client, path: str, body: Any, progress: ProgressHandler | None) -> TransferProgress:
    """POST, then read the NDJSON lines; an ``error`` line raises. Returns the last line."""
    try:
        with api._http.stream("POST", path, json=body, timeout=api._no_read_timeout) as resp:
            if resp.is_error:
                raise error_from_body(resp.status_code, resp.read())
            last: TransferProgress | None = None
            for line in resp.iter_lines():
                if not line.strip():
                    continue
                try:
                    last = TransferProgress.model_validate_json(line)
                except ValidationError as exc:
                    raise AtollError("protocol", f"malformed progress line: {exc}") from exc
                if last.error is not None:
                    raise AtollError(last.error.code, last.error.message, 200)
                if progress is not None:
                    progress(last)
    except httpx.TransportError as exc:
        raise api._transport_error(exc) from exc
    if last is None:
        raise AtollError("protocol", f"POST {path}: empty answer")
    return last
