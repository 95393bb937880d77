"""One layer of a pull, done whole in a worker process: download, verify, inflate and untar.

Why a process: with every layer on a thread of the agent, each read, hash, inflate and write releases
the one GIL and must win it back, and the untar loop itself holds it. On an idle host that costs
little, but on a busy one every hand-over can wait a scheduler slice, and a pull of 8 layers took 2.4x
skopeo's time at load 6-7 (0.9x when idle). A worker process has a GIL of its own, so the layers of
a pull proceed as independently as Go's goroutines do.

The worker gets a :class:`LayerJob` (URL, the auth header to send, expected digest and size, TLS
settings, the layer's plan, where the kept blob and the unpacked tree go) and does exactly what a
thread did: a :class:`BlobStream` (resume with ``Range``, restart without, 429/5xx back-off, digest
check at the end) feeding ``unpack_stream`` (the hostile-tar rules of ``extract.py``, the diff_id
check). It answers with one message, and sends these on the way:

- ``("progress", n)``: bytes received so far;
- ``("auth", challenge)``: the registry answered 401. The worker waits for ``("headers", h)`` (the
  parent answered the challenge: a fresh token) or ``("failed", exc)``, and resumes with ``Range``;
- at the end ``("done", size)``, ``("answer", status, body)`` (a final HTTP error: the parent turns it
  into the domain error, as it knows the credentials) or ``("failed", exc)``.

The parent installs the layer (a rename into the store) only after ``done``, which only comes after
the blob matched its digest and the tar its diff_id. Keep-alive connections of the last registry are
kept between jobs. The worker exits when its socket closes, so it never outlives the agent for long.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from http.client import HTTPMessage
from multiprocessing.connection import Connection
from pathlib import Path

from atoll.agent.images.layers import unpack_stream
from atoll.agent.images.plan import LayerPlan
from atoll.agent.registry.blobstream import BlobStream, Connections
from atoll.agent.registry.options import RegistryOptions
from atoll.model.errors import AtollError, RuntimeFailure

TIMEOUT = 30.0


@dataclass(frozen=True)
class LayerJob:
    url: str
    """The blob's URL on the registry (``base/v2/<repo>/blobs/<digest>``)."""
    what: str
    """How errors name the blob."""
    plan: LayerPlan
    """Its digest, size, diff_id and compression."""
    blob: str
    """Where the kept blob is written."""
    diff: str
    """The empty directory the layer is unpacked into."""
    headers: dict[str, str]
    """The auth header for the registry as of now (the worker asks again on a 401)."""
    options: RegistryOptions
    """TLS trust (CA dirs, insecure registries), attempts and back-off."""
    registry: str
    """host:port of the registry's own origin, and whether TLS to it is verified."""
    verify: bool


class HttpAnswer(Exception):
    """A final HTTP answer that is an error; the parent turns it into the domain error."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def tls_context(options: RegistryOptions, registry: str, verify: bool, netloc: str) -> ssl.SSLContext:
    """TLS for a blob download from ``netloc``: the registry's own setting, or what its host says."""
    if netloc != registry:
        verify = not options.is_insecure(netloc)
    if verify:
        return options.ssl_context(netloc)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Session:
    """Connections (and TLS contexts) of one registry, kept while jobs come for the same one."""

    def __init__(self, options: RegistryOptions, registry: str, verify: bool) -> None:
        self.key = (options, registry, verify)
        contexts: dict[str, ssl.SSLContext] = {}

        def tls(scheme: str, netloc: str) -> ssl.SSLContext:
            if netloc not in contexts:
                contexts[netloc] = tls_context(options, registry, verify, netloc)
            return contexts[netloc]

        self.connections = Connections(tls, TIMEOUT, options.receive_buffer)


def main() -> None:
    """The worker process's entry point: its socket's fd is in ``ATOLL_LAYER_FD``."""
    conn = Connection(int(os.environ.pop("ATOLL_LAYER_FD")))
    conn.send(("ready",))  # imports done: the pool counts this worker as started
    serve(conn)


def serve(conn: Connection) -> None:
    """A worker's life: jobs from ``conn`` one at a time until it closes (or sends None)."""
    session: _Session | None = None
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        assert isinstance(job, LayerJob)
        key = (job.options, job.registry, job.verify)
        if session is None or session.key != key:
            if session is not None:
                session.connections.close()
            session = _Session(job.options, job.registry, job.verify)
        try:
            reply: tuple[object, ...] = ("done", _run(job, conn, session.connections))
        except HttpAnswer as exc:
            reply = ("answer", exc.status, exc.body)
        except AtollError as exc:
            reply = ("failed", exc)
        except Exception as exc:
            reply = ("failed", RuntimeFailure(f"{job.what}: {type(exc).__name__}: {exc}"))
        try:
            conn.send(reply)
        except OSError:
            break
    if session is not None:
        session.connections.close()


def _run(job: LayerJob, conn: Connection, connections: Connections) -> int:
    headers = dict(job.headers)
    plan = job.plan
    assert plan.digest is not None and plan.size is not None

    def authorize(msg: HTTPMessage) -> None:
        conn.send(("auth", msg.get_all("www-authenticate") or []))
        answer = conn.recv()
        if answer[0] == "failed":
            raise answer[1]
        headers.clear()
        headers.update(answer[1])

    def error(status: int, body: bytes) -> Exception:
        return HttpAnswer(status, body)

    stream = BlobStream(
        connections,
        job.url,
        Path(job.blob),
        digest=plan.digest,
        size=plan.size,
        what=job.what,
        headers=lambda: headers,
        authorize=authorize,
        error=error,
        progress=lambda n: conn.send(("progress", n)),
        stop=threading.Event(),  # a cancelled pull kills this process instead
        max_attempts=job.options.max_attempts,
        backoff=job.options.backoff,
        release=job.options.release_blob_pages,
    )
    try:
        return unpack_stream(stream, plan, Path(job.diff))
    finally:
        stream.close()
