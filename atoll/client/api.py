"""The low-level SDK: one method per endpoint of the native API, returning the wire models.

Like docker-py's ``APIClient``, it adds nothing on top of the endpoints except what HTTP needs: paths,
query parameters, error bodies turned into ``AtollError``, streaming bodies in both directions, and
timeouts that fit each call (none while reading from calls that block until a process exits).
"""

from __future__ import annotations

import inspect
import ipaddress
import os
from collections.abc import Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as ws_connect

from atoll import __version__
from atoll.client.cluster import ClusterMethods
from atoll.client.errors import AtollConnectionError, AtollError, error_from_body
from atoll.client.exec import ExecSession
from atoll.client.framing import FrameDecoder, FramingError
from atoll.client.networks import NetworkMethods
from atoll.client.plumbing import model_of, models_of
from atoll.client.routers import RouterMethods
from atoll.client.secgroups import SecurityGroupMethods
from atoll.client.transfers import RegistryMethods
from atoll.client.uploads import Progress, UploadSource, body_size, iter_body
from atoll.client.volumes import VolumeMethods
from atoll.schemas import (
    ExecStart,
    Host,
    Image,
    ImageConfigWire,
    ImageRemoved,
    ImageTag,
    Instance,
    InstanceCreate,
    Project,
    ProjectCreate,
    WaitResult,
)

DEFAULT_URL = "http://127.0.0.1:7780"
DEFAULT_PROJECT = "default"
TAR_MEDIA_TYPE = "application/x-tar"

# websockets >= 17.1 wants ``legacy=True`` to hand back a plain connection without a context manager.
_WS_DIRECT: dict[str, Any] = {"legacy": True} if "legacy" in inspect.signature(ws_connect).parameters else {}

WaitCondition = Literal["not-running", "next-exit", "removed"]
Params = Mapping[str, str | list[str]]


class LogStream:
    """A log response as (stream id, payload) frames. Exhaust or ``close`` it to free the connection."""

    def __init__(self, response: httpx.Response, url: str) -> None:
        self._response = response
        self._url = url
        self._frames = self._decode()

    def __iter__(self) -> LogStream:
        return self

    def __next__(self) -> tuple[int, bytes]:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()
        self._response.close()

    def __enter__(self) -> LogStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _decode(self) -> Generator[tuple[int, bytes]]:
        decoder = FrameDecoder()
        try:
            for chunk in self._response.iter_bytes():
                yield from decoder.feed(chunk)
            decoder.close()
        except FramingError as exc:
            raise AtollError("protocol", f"malformed log stream: {exc}") from exc
        except httpx.TransportError as exc:
            raise AtollConnectionError.lost(self._url, exc) from exc
        finally:
            self._response.close()


class AtollAPI(
    RegistryMethods, NetworkMethods, VolumeMethods, RouterMethods, SecurityGroupMethods, ClusterMethods
):
    """A synchronous client of one Atoll controller, acting in one project (``project`` may be reassigned)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        project: str = DEFAULT_PROJECT,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.project = project
        self._connect_timeout = connect_timeout
        # A loopback API is never reached through a proxy, whatever the environment says.
        self._direct = _is_loopback(urlsplit(self.base_url).hostname or "")
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout,
            transport=transport,
            trust_env=not self._direct,
            headers={"User-Agent": f"atoll-sdk/{__version__}"},
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> AtollAPI:
        """``ATOLL_URL`` and ``ATOLL_PROJECT``, with the defaults of the constructor."""
        env = os.environ if environ is None else environ
        return cls(env.get("ATOLL_URL") or DEFAULT_URL, env.get("ATOLL_PROJECT") or DEFAULT_PROJECT, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AtollAPI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # Projects and hosts

    def projects(self) -> list[Project]:
        return models_of(self._request("GET", "/v1/projects"), Project)

    def create_project(self, name: str) -> Project:
        body = ProjectCreate(name=name).model_dump(mode="json")
        return model_of(self._request("POST", "/v1/projects", json=body), Project)

    def hosts(self) -> list[Host]:
        return models_of(self._request("GET", "/v1/hosts"), Host)

    # Images

    def images(self) -> list[Image]:
        return models_of(self._request("GET", self._path("images")), Image)

    def inspect_image(self, ref: str) -> Image:
        return model_of(self._request("GET", self._path("images", ref)), Image)

    def import_image(
        self, stream: UploadSource, progress: Progress | None = None, *, size: int | None = None
    ) -> list[Image]:
        """Upload a ``docker save`` archive or an OCI layout archive, streamed as it is read."""
        resp = self._upload(self._path("images", "import"), stream, progress, size, params={})
        return models_of(resp, Image)

    def build_image(
        self,
        stream: UploadSource,
        *,
        tag: str,
        config: ImageConfigWire | None = None,
        progress: Progress | None = None,
        size: int | None = None,
    ) -> Image:
        """Make a one-layer image from a root filesystem tar stream and an image config."""
        params = {"tag": tag}
        if config is not None:
            params["config"] = config.model_dump_json(exclude_defaults=True)
        resp = self._upload(self._path("images", "build"), stream, progress, size, params=params)
        return model_of(resp, Image)

    def tag_image(self, ref: str, tag: str) -> Image:
        body = ImageTag(tag=tag).model_dump(mode="json")
        return model_of(self._request("POST", self._path("images", ref, "tag"), json=body), Image)

    def remove_image(self, ref: str, *, force: bool = False) -> ImageRemoved:
        resp = self._request("DELETE", self._path("images", ref), params=_flags(force=force))
        return model_of(resp, ImageRemoved)

    # Instances

    def create_instance(self, spec: InstanceCreate) -> Instance:
        body = spec.model_dump(mode="json", exclude_unset=True)
        return model_of(self._request("POST", self._path("instances"), json=body), Instance)

    def instances(
        self,
        *,
        all: bool = False,
        labels: list[str] | None = None,
        names: list[str] | None = None,
        statuses: list[str] | None = None,
    ) -> list[Instance]:
        """Running instances, or ``all``. Filters: every label (``KEY`` or ``KEY=VALUE``) must match; any of
        the names (substrings) and any of the statuses; a status filter looks beyond running ones."""
        params: dict[str, str | list[str]] = dict(_flags(all=all))
        for key, values in (("label", labels), ("name", names), ("status", statuses)):
            if values:
                params[key] = list(values)
        return models_of(self._request("GET", self._path("instances"), params=params), Instance)

    def inspect_instance(self, ref: str) -> Instance:
        return model_of(self._request("GET", self._path("instances", ref)), Instance)

    def start_instance(self, ref: str) -> Instance:
        return self._action(ref, "start", {})

    def stop_instance(self, ref: str, *, timeout: float | None = None) -> Instance:
        return self._action(ref, "stop", _opt(timeout=timeout), blocking=True)

    def restart_instance(self, ref: str, *, timeout: float | None = None) -> Instance:
        return self._action(ref, "restart", _opt(timeout=timeout), blocking=True)

    def rename_instance(self, ref: str, name: str) -> Instance:
        resp = self._request("POST", self._path("instances", ref, "rename"), json={"name": name})
        return model_of(resp, Instance)

    def kill_instance(self, ref: str, *, signal: str | int | None = None) -> Instance:
        return self._action(ref, "kill", _opt(signal=signal))

    def wait_instance(self, ref: str, *, condition: WaitCondition | None = None) -> WaitResult:
        """Block until the instance is not running (the server's default), its next exit, or its removal.
        There is no read timeout."""
        resp = self._request(
            "POST",
            self._path("instances", ref, "wait"),
            params=_opt(condition=condition),
            timeout=self._no_read_timeout,
        )
        return model_of(resp, WaitResult)

    def remove_instance(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """``volumes``: its anonymous volumes go too (``docker rm -v``)."""
        self._request("DELETE", self._path("instances", ref), params=_flags(force=force, volumes=volumes))

    def logs(
        self,
        ref: str,
        *,
        follow: bool = False,
        tail: int | str | None = None,
        timestamps: bool = False,
        since: str | None = None,
    ) -> LogStream:
        """Open the log stream now (so errors raise here) and return its frames as (stream id, bytes).

        ``tail`` is a number of lines or ``"all"``; ``since`` an RFC 3339 time or a Unix timestamp."""
        if tail == "all":
            tail = None
        params: dict[str, str | list[str]] = {**_flags(follow=follow, timestamps=timestamps)}
        params.update(_opt(tail=tail, since=since))
        path = self._path("instances", ref, "logs")
        timeout = self._no_read_timeout if follow else self._timeout
        request = self._http.build_request("GET", path, params=params, timeout=timeout)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.is_error:
            try:
                body = response.read()
            finally:
                response.close()
            raise error_from_body(response.status_code, body)
        return LogStream(response, self.base_url)

    def exec(self, ref: str, spec: ExecStart) -> ExecSession:
        """Start a process in a running instance, over a WebSocket; there is no read timeout."""
        url = self._ws_url(self._path("instances", ref, "exec"))
        try:
            conn = ws_connect(
                url,
                open_timeout=self._connect_timeout,
                proxy=None if self._direct else True,
                max_size=None,
                ping_interval=20,
                ping_timeout=60,
                user_agent_header=f"atoll-sdk/{__version__}",
                **_WS_DIRECT,
            )
        except InvalidStatus as exc:
            raise error_from_body(exc.response.status_code, bytes(exc.response.body or b"")) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise AtollConnectionError.unreachable(self.base_url, exc) from exc
        session = ExecSession(conn, self.base_url)
        try:
            conn.send(spec.model_dump_json())
        except Exception:
            session.close()
            raise
        return session

    # Plumbing

    @property
    def _no_read_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self._timeout.write, connect=self._connect_timeout, read=None)

    def _path(self, *parts: str) -> str:
        tail = "/".join(quote(p, safe="/:@+") for p in parts)
        return f"/v1/projects/{quote(self.project, safe='')}/{tail}"

    def _ws_url(self, path: str) -> str:
        base = urlsplit(self.base_url)
        scheme = "wss" if base.scheme == "https" else "ws"
        return f"{scheme}://{base.netloc}{base.path}{path}"

    def _action(self, ref: str, action: str, params: Params, *, blocking: bool = False) -> Instance:
        timeout = self._no_read_timeout if blocking else self._timeout
        resp = self._request("POST", self._path("instances", ref, action), params=params, timeout=timeout)
        return model_of(resp, Instance)

    def _upload(
        self, path: str, stream: UploadSource, progress: Progress | None, size: int | None, params: Params
    ) -> httpx.Response:
        headers = {"Content-Type": TAR_MEDIA_TYPE}
        size = body_size(stream) if size is None else size
        if size is not None:
            headers["Content-Length"] = str(size)
        # The server unpacks and verifies after the upload; that can take long for a big image.
        return self._request(
            "POST",
            path,
            params=params,
            content=iter_body(stream, progress),
            headers=headers,
            timeout=self._no_read_timeout,
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        try:
            resp = self._http.request(
                method,
                path,
                params=params,
                json=json,
                content=content,
                headers=headers,
                timeout=timeout or self._timeout,
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if resp.is_error:
            raise error_from_body(resp.status_code, resp.content)
        return resp

    def _transport_error(self, exc: httpx.TransportError) -> AtollConnectionError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return AtollConnectionError.unreachable(self.base_url, exc)
        return AtollConnectionError.lost(self.base_url, str(exc) or type(exc).__name__)


def _flags(**flags: bool) -> dict[str, str]:
    """Boolean query parameters, sent only when true."""
    return {k: "true" for k, v in flags.items() if v}


def _opt(**values: object) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
