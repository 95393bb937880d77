"""A client of one registry endpoint (the OCI distribution API v2), over httpx.

Thin and faithful: one method per call the puller and pusher need (manifests, blobs, uploads, mounts).
What it adds is what every call needs: authentication on a 401 (``auth.py``), retries with exponential
back-off for transient failures (connection errors, 429, 5xx) of calls that can be repeated, and the
registry's error answers turned into domain errors naming the image and the problem. Everything a
registry sends is bounded: manifests and configs are read up to a cap, blobs up to their descriptor's
size, and all of it is hashed and compared with the digest that names it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from http.client import HTTPMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from atoll.agent.images.remote import Sink
from atoll.agent.registry.auth import Authenticator
from atoll.agent.registry.blobstream import BlobStream, Connections
from atoll.agent.registry.bodies import Progress, describe, read_capped
from atoll.agent.registry.layerpool import LayerWorkers
from atoll.agent.registry.layerproc import LayerJob
from atoll.agent.registry.options import RegistryOptions
from atoll.model.errors import AtollError, BadImage, NotFound, RegistryAuthError, RegistryError
from atoll.model.registry import Credential

MANIFEST_LIMIT = 4 << 20
"""Docker's own cap for manifests: real ones are a few KiB, so 4 MiB bounds memory without refusing any."""
CONFIG_LIMIT = 16 << 20
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
AUTH_WAIT = 120.0
"""Longest a download thread waits for the event loop to answer a 401 (a token fetch, with retries)."""


async def connect(
    base_url: str, host: str, options: RegistryOptions, credential: Credential | None
) -> RegistryClient:
    """A client for ``base_url`` (``https://host[:port]``; mirrors may say ``http://``).

    An insecure registry is tried over HTTPS without verification, then over plain HTTP."""
    if base_url.startswith("http://"):
        return RegistryClient(base_url, host, options, credential, verify=False)
    if not options.is_insecure(host):
        return RegistryClient(base_url, host, options, credential, verify=options.ssl_context(host))
    client = RegistryClient(base_url, host, options, credential, verify=False)
    try:
        await client.http.get("/v2/")
        return client
    except httpx.HTTPError:
        await client.aclose()
    plain = RegistryClient(
        "http://" + base_url.removeprefix("https://"), host, options, credential, verify=False
    )
    try:
        await plain.http.get("/v2/")
    except httpx.HTTPError as exc:
        await plain.aclose()
        raise RegistryError(f"registry {host} is unreachable over HTTPS and HTTP: {describe(exc)}") from exc
    return plain


class RegistryClient:
    def __init__(
        self,
        base_url: str,
        host: str,
        options: RegistryOptions,
        credential: Credential | None,
        *,
        verify: ssl.SSLContext | bool,
    ) -> None:
        self.base_url = base_url
        self.host = host
        self._options = options
        self.auth = Authenticator(host, credential)
        self.http = httpx.AsyncClient(
            base_url=base_url, verify=verify, timeout=TIMEOUT, follow_redirects=True, trust_env=False
        )
        self._verify = verify
        self._connections = Connections(self._tls, TIMEOUT.read or 30.0, options.receive_buffer)

    async def aclose(self) -> None:
        await self.http.aclose()
        self._connections.close()

    def _tls(self, scheme: str, netloc: str) -> ssl.SSLContext:
        """TLS for blob downloads: the registry's own setting; a redirect target's as its host says."""
        verify = self._verify if netloc == urlsplit(self.base_url).netloc else None
        if verify is None:
            verify = False if self._options.is_insecure(netloc) else self._options.ssl_context(netloc)
        if isinstance(verify, ssl.SSLContext):
            return verify
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    # -- the calls -------------------------------------------------------------------------------

    async def check(self) -> None:
        """``GET /v2/``: reachable, and our credentials (if any) accepted."""
        resp = await self._send("GET", "/v2/", [], what=f"registry {self.host}")
        await self._expect(resp, (200,), f"registry {self.host}")

    async def get_manifest(self, repo: str, reference: str, scopes: list[str]) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index, verified when fetched by digest."""
        what = (
            f"{self.host}/{repo}:{reference}" if ":" not in reference else f"{self.host}/{repo}@{reference}"
        )
        resp = await self._send(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            scopes,
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            stream=True,
            what=what,
        )
        try:
            await self._expect(resp, (200,), what, manifest=True)
            data = await read_capped(resp, MANIFEST_LIMIT, f"{what}: manifest")
        finally:
            await resp.aclose()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise BadImage(f"{what}: manifest digest mismatch: content is {digest}")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        return data, media_type, digest

    async def get_small_blob(
        self, repo: str, digest: str, scopes: list[str], limit: int = CONFIG_LIMIT
    ) -> bytes:
        what = f"{self.host}/{repo}: blob {digest}"
        resp = await self._send("GET", f"/v2/{repo}/blobs/{digest}", scopes, stream=True, what=what)
        try:
            await self._expect(resp, (200,), what)
            data = await read_capped(resp, limit, what)
        finally:
            await resp.aclose()
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise BadImage(f"{what}: digest mismatch: content is {got}")
        return data

    def blob_stream(
        self,
        repo: str,
        digest: str,
        size: int,
        dest: Path,
        scopes: list[str],
        *,
        progress: Progress,
        stop: threading.Event,
        loop: asyncio.AbstractEventLoop,
    ) -> BlobStream:
        """A reader of a blob for a worker thread (``blobstream.py``): resumed, verified, kept in ``dest``."""
        what = f"{self.host}/{repo}: blob {digest}"

        def authorize(msg: HTTPMessage) -> None:  # on the worker thread: the event loop answers
            self._answer_challenge(msg.get_all("www-authenticate") or [], scopes, loop, what)

        return BlobStream(
            self._connections,
            f"{self.base_url}/v2/{repo}/blobs/{digest}",
            dest,
            digest=digest,
            size=size,
            what=what,
            headers=lambda: self.auth.header(scopes),
            authorize=authorize,
            error=lambda status, body: self.error_for(status, body, what),
            progress=progress,
            stop=stop,
            max_attempts=self._options.max_attempts,
            backoff=self._options.backoff,
            release=self._options.release_blob_pages,
        )

    def pull_layer(
        self,
        workers: LayerWorkers,
        repo: str,
        sink: Sink,
        scopes: list[str],
        *,
        progress: Progress,
        stop: threading.Event,
        loop: asyncio.AbstractEventLoop,
    ) -> int:
        """Have a worker process download, verify and unpack a layer into ``sink`` (``layerproc.py``);
        its unpacked size. On a pull thread; the worker's 401s are answered on the event loop."""
        plan = sink.plan
        what = f"{self.host}/{repo}: blob {plan.digest}"

        def authorize(challenge: list[str]) -> dict[str, str]:
            self._answer_challenge(challenge, scopes, loop, what)
            return self.auth.header(scopes)

        job = LayerJob(
            url=f"{self.base_url}/v2/{repo}/blobs/{plan.digest}",
            what=what,
            plan=plan,
            blob=str(sink.blob),
            diff=str(sink.diff),
            headers=self.auth.header(scopes),
            options=self._options,
            registry=urlsplit(self.base_url).netloc,
            verify=self._verify is not False,
        )
        return workers.run(
            job,
            progress=progress,
            authorize=authorize,
            answer=lambda status, body: self.error_for(status, body, what),
            stop=stop,
        )

    def _answer_challenge(
        self, challenge: list[str], scopes: list[str], loop: asyncio.AbstractEventLoop, what: str
    ) -> None:
        """Answer a 401 a download thread (or its worker) got, on the event loop; wait for it."""
        resp = httpx.Response(401, headers=[("www-authenticate", v) for v in challenge])
        answer = asyncio.run_coroutine_threadsafe(self.auth.answer(self.http, resp, scopes), loop)
        try:
            answer.result(AUTH_WAIT)
        except TimeoutError:
            answer.cancel()
            raise RegistryError(f"{what}: no answer to the registry's challenge in time") from None

    async def blob_exists(self, repo: str, digest: str, scopes: list[str]) -> bool:
        what = f"{self.host}/{repo}: blob {digest}"
        resp = await self._send("HEAD", f"/v2/{repo}/blobs/{digest}", scopes, what=what)
        if resp.status_code == 404:
            return False
        await self._expect(resp, (200,), what)
        return True

    async def mount_blob(self, repo: str, digest: str, source: str, scopes: list[str]) -> str | None:
        """Ask for a cross-repository mount. None if mounted; else the upload URL the registry opened."""
        what = f"{self.host}/{repo}: mount {digest} from {source}"
        params = {"mount": digest, "from": source}
        resp = await self._send("POST", f"/v2/{repo}/blobs/uploads/", scopes, params=params, what=what)
        if resp.status_code == 201:
            return None
        await self._expect(resp, (202,), what)
        return self._location(resp, what)

    async def start_upload(self, repo: str, scopes: list[str]) -> str:
        what = f"{self.host}/{repo}: blob upload"
        resp = await self._send("POST", f"/v2/{repo}/blobs/uploads/", scopes, what=what)
        await self._expect(resp, (202,), what)
        return self._location(resp, what)

    async def put_blob(
        self, location: str, digest: str, path: Path, size: int, scopes: list[str], progress: Progress
    ) -> None:
        """Upload a blob whole (a monolithic ``PUT ...?digest=``), streamed from ``path``."""
        what = f"{self.host}: upload of {digest}"
        url = httpx.URL(location)
        url = url.copy_merge_params({"digest": digest})
        resp = await self._send(
            "PUT",
            str(url),
            scopes,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=lambda: _file_chunks(path, progress),
            what=what,
        )
        await self._expect(resp, (201, 204), what)

    async def put_blob_bytes(self, location: str, digest: str, data: bytes, scopes: list[str]) -> None:
        what = f"{self.host}: upload of {digest}"
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        resp = await self._send("PUT", str(url), scopes, headers=headers, body=lambda: _once(data), what=what)
        await self._expect(resp, (201, 204), what)

    async def put_manifest(self, repo: str, tag: str, data: bytes, media_type: str, scopes: list[str]) -> str:
        what = f"{self.host}/{repo}:{tag}: manifest"
        resp = await self._send(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            scopes,
            headers={"Content-Type": media_type},
            body=lambda: _once(data),
            what=what,
        )
        await self._expect(resp, (201, 200), what)
        return "sha256:" + hashlib.sha256(data).hexdigest()

    # -- plumbing ----------------------------------------------------------------------------------

    def _location(self, resp: httpx.Response, what: str) -> str:
        location = resp.headers.get("location")
        if not location:
            raise RegistryError(f"{what}: the registry gave no upload location")
        return str(httpx.URL(self.base_url).join(location))

    async def _send(
        self,
        method: str,
        url: str,
        scopes: Iterable[str],
        *,
        what: str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: Callable[[], AsyncIterator[bytes]] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        scopes = list(scopes)
        repeatable = method in ("GET", "HEAD") or body is not None
        answered = False
        attempt = 0
        while True:
            request = self.http.build_request(
                method,
                url,
                headers={**(headers or {}), **self.auth.header(scopes)},
                params=params,
                content=body() if body is not None else None,
            )
            try:
                resp = await self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                attempt += 1
                if not repeatable or attempt >= self._options.max_attempts:
                    raise RegistryError(
                        f"{what}: registry {self.host} is unreachable: {describe(exc)}"
                    ) from exc
                await asyncio.sleep(self._options.backoff * 2 ** (attempt - 1))
                continue
            if resp.status_code == 401 and not answered:
                await resp.aclose()
                await self.auth.answer(self.http, resp, scopes)
                answered = True
                continue
            if resp.status_code in _RETRY_STATUS and repeatable and attempt + 1 < self._options.max_attempts:
                await resp.aclose()
                attempt += 1
                await asyncio.sleep(self._options.backoff * 2 ** (attempt - 1))
                continue
            return resp

    async def _expect(
        self, resp: httpx.Response, ok: tuple[int, ...], what: str, manifest: bool = False
    ) -> None:
        if resp.status_code in ok:
            return
        body = (await resp.aread())[:65536]
        raise self.error_for(resp.status_code, body, what, manifest)

    def error_for(self, status: int, body: bytes, what: str, manifest: bool = False) -> AtollError:
        """The domain error for a registry's final answer ``status`` with (the start of) ``body``."""
        detail = _registry_message(body) or f"HTTP {status}"
        if status == 404:
            kind = "manifest unknown" if manifest else "not found"
            return NotFound(f"{what}: {kind}: {detail}")
        if status == 401 and self.auth.has_credential:
            return RegistryAuthError(f"{what}: the registry refused the credentials ({detail})")
        if status in (401, 403):
            hint = "" if self.auth.has_credential else f"; log in with `atoll login {self.host}`"
            return RegistryAuthError(f"{what}: access denied ({detail}){hint}")
        return RegistryError(f"{what}: the registry answered {status}: {detail}")


def _registry_message(body: bytes) -> str:
    try:
        doc: Any = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return " ".join(str(errors[0].get(k) or "") for k in ("code", "message")).strip()[:500]
    except ValueError:
        pass
    return ""


async def _file_chunks(path: Path, progress: Progress, size: int = 1 << 20) -> AsyncIterator[bytes]:
    sent = 0
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, size):
            sent += len(chunk)
            progress(sent)
            yield chunk


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
