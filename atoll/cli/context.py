"""How commands reach the SDK: the root callback puts a ``CliState`` in the click context.

Tests (or embedding programs) pass an ``ApiFactory`` as the context's ``obj``; the root callback uses it
instead of ``AtollAPI`` to build the client, so no test has to patch a global.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import typer

from atoll.client import AtollAPI

ApiFactory = Callable[[str, str], AtollAPI]
"""(base URL, project) -> client."""


@dataclass
class CliState:
    url: str
    project: str
    factory: ApiFactory = AtollAPI
    _api: AtollAPI | None = field(default=None, repr=False)

    @property
    def api(self) -> AtollAPI:
        if self._api is None:
            self._api = self.factory(self.url, self.project)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def api(ctx: typer.Context) -> AtollAPI:
    state = ctx.find_object(CliState)
    if state is None:
        raise RuntimeError("the atoll CLI state is missing; invoke commands through atoll.cli.main:app")
    return state.api
