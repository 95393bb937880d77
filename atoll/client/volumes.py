"""SDK methods for volumes, one method per endpoint. A mixin of ``AtollAPI`` (see ``plumbing``)."""

from __future__ import annotations

from collections.abc import Sequence

from atoll.client.plumbing import ClientCore as _Client
from atoll.client.plumbing import model_of as _one
from atoll.client.plumbing import models_of as _many
from atoll.schemas import Volume, VolumeCreate, VolumesPruned


class VolumeMethods:
    def volumes(
        self: _Client,
        *,
        name: Sequence[str] = (),
        label: Sequence[str] = (),
        driver: Sequence[str] = (),
        dangling: bool | None = None,
    ) -> list[Volume]:
        params: dict[str, str | list[str]] = {
            k: list(v) for k, v in (("name", name), ("label", label), ("driver", driver)) if v
        }
        if dangling is not None:
            params["dangling"] = "true" if dangling else "false"
        return _many(self._request("GET", self._path("volumes"), params=params), Volume)

    def create_volume(self: _Client, spec: VolumeCreate | None = None) -> Volume:
        body = (spec or VolumeCreate()).model_dump(mode="json", exclude_unset=True)
        return _one(self._request("POST", self._path("volumes"), json=body), Volume)

    def inspect_volume(self: _Client, ref: str) -> Volume:
        return _one(self._request("GET", self._path("volumes", ref)), Volume)

    def remove_volume(self: _Client, ref: str) -> None:
        self._request("DELETE", self._path("volumes", ref))

    def prune_volumes(self: _Client, *, all: bool = False, label: Sequence[str] = ()) -> VolumesPruned:
        params: dict[str, str | list[str]] = {"label": list(label)} if label else {}
        if all:
            params["all"] = "true"
        return _one(self._request("POST", self._path("volumes", "prune"), params=params), VolumesPruned)
