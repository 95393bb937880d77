"""The route table of the Docker listener: (method, path pattern) -> handler, and API versions.

Patterns name their parts: ``/containers/{id}/json``. ``{name*}`` also matches slashes, for image
references (``/images/{name*}/json`` matches ``/images/reg:5000/team/app:1/json``). Paths may start
with ``/vX.Y``: versions from ``MIN_API_VERSION`` to ``API_VERSION`` are served, others get a 400
with Docker's wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atoll.api.docker.http import DockerError, Handler

API_VERSION = "1.50"
"""What the Docker 28 CLI asks for."""
MIN_API_VERSION = "1.24"

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_PART = re.compile(r"\{(\w+)(\*?)\}")


def version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def split_version(path: str) -> tuple[str, str]:
    """(``/containers/json``, ``1.50``) from ``/v1.50/containers/json``; unversioned paths get the
    newest version, as with dockerd."""
    m = _VERSIONED.match(path)
    if m is None:
        return path, API_VERSION
    version = f"{m.group(1)}.{m.group(2)}"
    wanted = version_tuple(version)
    if wanted < version_tuple(MIN_API_VERSION):
        raise DockerError(
            400,
            f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
            "please upgrade your client to a newer version",
        )
    if wanted > version_tuple(API_VERSION):
        raise DockerError(
            400, f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )
    return m.group(3), version


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in _PART.finditer(pattern):
        out += re.escape(pattern[pos : m.start()])
        out += f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
        pos = m.end()
    return re.compile("^" + out + re.escape(pattern[pos:]) + "$")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    streamed_body: bool = False
    """The handler reads the body as it arrives (``Request.chunks``): image archives, ``docker cp``
    into a container. Other bodies are read whole first, under the listener's cap."""


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = [(r.method, _compile(r.pattern), r.handler) for r in routes]
        self._streamed = [(r.method, _compile(r.pattern)) for r in routes if r.streamed_body]

    def streams_body(self, method: str, path: str) -> bool:
        """Whether the route for this request (a path without its version) reads its body itself."""
        return any(m == method and regex.match(path) for m, regex in self._streamed)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and the captured parts; 404 for an unknown path, 405 for a known one with another
        method. HEAD is served by GET routes unless a HEAD route exists."""
        path_known = False
        for candidates in ((method,), ("GET",) if method == "HEAD" else ()):
            for route_method, regex, handler in self._routes:
                m = regex.match(path)
                if m is None:
                    continue
                path_known = True
                if route_method in candidates:
                    return handler, m.groupdict()
        if path_known:
            raise DockerError(405, f"method {method} not allowed on {path}")
        raise DockerError(404, "page not found")
