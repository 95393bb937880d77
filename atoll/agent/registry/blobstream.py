"""Layer blob downloads on a worker thread: a resumable, verifying byte stream over blocking HTTP/1.1.

Why not httpx, as for every other registry call: a blob is the one call where the bytes dominate. On
the event loop, httpx hands over 64 KiB at a time through h11, anyio and epoll (re)registration, which
on a 2-core host cost about as much CPU as everything else in a pull; a blocking ``http.client``
response read 1-4 MiB at a time on a thread spends that time in C with the GIL released (measured on a
loopback registry: 8 layers of 26 MB, 4 at a time, 0.7-0.9 s against 1.2-3.8 s, and skopeo's 1.7-2.0 s).

So a :class:`BlobStream` is a plain ``Reader``: the thread that unpacks the layer reads the blob
straight off the socket, and every byte read is also written to the kept blob file and hashed. What the
consumer sees is the blob exactly once, in order, whatever happens underneath:

- a transfer that breaks off (reset, timeout, a body that ends early) is **resumed** with
  ``Range: bytes=N-`` where the registry answers 206 from N; where it answers 200 instead, the first N
  bytes are skipped. 429 and 5xx answers are retried. Each failure counts, with exponential back-off,
  up to ``max_attempts``;
- never more bytes than the descriptor's size are accepted;
- at the end of the blob, the sha256 of everything read is compared with the digest that names it:
  the last ``read`` raises :class:`BadImage` instead of returning ``b""`` when they differ, so a
  consumer that reads to the end can never take an unverified blob for a good one.

Authentication stays with the async client: on a 401 the thread asks the event loop to answer the
challenge (``Authorizer``) and retries. Redirects (registries on object stores send blobs from
elsewhere) are followed; the ``Authorization`` header only goes to the registry's own origin.
Connections are kept alive and reused between the layers of a pull (``Connections``).
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

from atoll.agent.images.streams import CHUNK
from atoll.agent.images.syncfs import release_after_writeback, start_writeback
from atoll.agent.registry.failures import describe
from atoll.model.errors import BadImage, RegistryError, RuntimeFailure

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
READ_SIZE = CHUNK
"""Bytes per read: as for unpacking (``streams.CHUNK``), large reads mean few GIL hand-overs."""
PROGRESS_EVERY = 2 << 20
RELEASE_EVERY = 8 << 20
"""Kept-blob bytes written between two ``release_after_writeback`` calls (see syncfs.py)."""
MAX_REDIRECTS = 5
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

Origin = tuple[str, str]
"""(scheme, host:port)."""
Authorizer = Callable[[http.client.HTTPMessage], None]
"""Answer a 401 (its headers given) so that ``headers()`` has what the next attempt needs; may raise."""


class Cancelled(RuntimeFailure):
    """The pull this download belongs to was given up; the reading thread stops at its next read."""


class Connections:
    """Idle keep-alive connections per origin, shared by the download threads of one registry client."""

    def __init__(
        self, tls: Callable[[str, str], ssl.SSLContext], timeout: float, receive_buffer: int = 0
    ) -> None:
        self._tls = tls
        self._timeout = timeout
        self._receive_buffer = receive_buffer
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, origin: Origin) -> tuple[http.client.HTTPConnection, bool]:
        """A connection to ``origin``, and whether it is a kept-alive one (the server may have closed it)."""
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        return self.new(origin), False

    def new(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, netloc = origin
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                netloc, timeout=self._timeout, context=self._tls(scheme, netloc)
            )
        else:
            conn = http.client.HTTPConnection(netloc, timeout=self._timeout)
        if self._receive_buffer:
            size = self._receive_buffer
            conn._create_connection = (  # type: ignore[attr-defined]
                lambda address, timeout=None, source=None: _connect_with_buffer(address, timeout, size)
            )
        return conn

    def put(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(origin, []).append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


class BlobStream:
    """The bytes of one blob, read off the registry as the caller reads, written to ``path`` and hashed.

    ``headers``: the registry's auth header for the next request; ``authorize``: called on a 401;
    ``error``: the domain error for a final answer (status, start of its body)."""

    def __init__(
        self,
        connections: Connections,
        url: str,
        path: Path,
        *,
        digest: str,
        size: int,
        what: str,
        headers: Callable[[], dict[str, str]],
        authorize: Authorizer,
        error: Callable[[int, bytes], Exception],
        progress: Callable[[int], None],
        stop: threading.Event,
        max_attempts: int,
        backoff: float,
        release: bool = True,
    ) -> None:
        self._connections = connections
        self._url = url
        self._origin = _origin_of(url)
        self._digest = digest
        self._size = size
        self._what = what
        self._headers = headers
        self._authorize = authorize
        self._error = error
        self._progress = progress
        self._stop = stop
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed at the end or by close()
        self._release = release
        self._released = 0
        self._hasher = hashlib.sha256()
        self.got = 0
        self._reported = 0
        self._failures = 0
        self._resp: http.client.HTTPResponse | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._conn_origin: Origin = self._origin
        self.done = False
        """The whole blob was read and its digest matched."""

    def read(self, size: int = -1, /) -> bytes:
        if self.done:
            return b""
        want = READ_SIZE if size < 0 else max(size, 1)
        while True:
            if self._stop.is_set():
                raise Cancelled(f"{self._what}: the pull was cancelled")
            if self._resp is None:
                self._open()
            assert self._resp is not None
            try:  # one byte more than we still expect: a registry sending too much is caught
                data = self._resp.read(min(want, self._size - self.got + 1))
            except (OSError, http.client.HTTPException) as exc:
                self._broken(describe(exc))
                continue
            if not data:
                if self.got < self._size:
                    self._broken("the body ended early")
                    continue
                self._finish()
                return b""
            if self.got + len(data) > self._size:
                raise BadImage(
                    f"{self._what}: the registry sent more than the {self._size} bytes the manifest says"
                )
            assert self._file is not None
            self._file.write(data)
            self._hasher.update(data)
            self.got += len(data)
            if self._release and self.got - self._released >= RELEASE_EVERY:
                self._release_written()
            if self.got - self._reported >= PROGRESS_EVERY or self.got == self._size:
                self._reported = self.got
                self._progress(self.got)
            return data

    def close(self) -> None:
        """Let go of the response and the file (the caller removes the file if the blob isn't kept)."""
        self._drop(reuse=False)
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- attempts --------------------------------------------------------------------------------

    def _finish(self) -> None:
        self._drop(reuse=True)
        actual = "sha256:" + self._hasher.hexdigest()
        if actual != self._digest:
            raise BadImage(f"{self._what}: digest mismatch: content is {actual}")
        assert self._file is not None
        if self._release:
            self._release_written()
        else:
            self._file.flush()
            start_writeback(self._file.fileno())  # see syncfs.py
        self._file.close()
        self._file = None
        self.done = True

    def _release_written(self) -> None:
        """Have what was written since the last call written out and dropped from the page cache."""
        assert self._file is not None
        self._file.flush()
        release_after_writeback(self._file.fileno(), self._released, self.got - self._released)
        self._released = self.got

    def _broken(self, why: str) -> None:
        self._drop(reuse=False)
        self._failures += 1
        if self._failures >= self._max_attempts:
            raise RegistryError(f"{self._what}: transfer broke off {self._failures} times ({why}); giving up")

    def _open(self) -> None:
        """A response whose body continues at byte ``self.got``; retries what is worth retrying."""
        answered = False
        while True:
            if self._failures:
                self._sleep(self._backoff * 2 ** (self._failures - 1))
            try:
                resp = self._request()
            except (OSError, http.client.HTTPException) as exc:
                self._drop(reuse=False)
                self._failures += 1
                if self._failures >= self._max_attempts:
                    raise RegistryError(f"{self._what}: registry unreachable: {describe(exc)}") from exc
                continue
            status = resp.status
            if status == 401 and not answered:
                self._drop(reuse=True, drain=True)
                self._authorize(resp.msg)
                answered = True
                continue
            if status in RETRY_STATUS and self._failures + 1 < self._max_attempts:
                self._drop(reuse=True, drain=True)
                self._failures += 1
                continue
            if self.got and status == 206 and _range_start(resp) == self.got:
                return  # resumed where the broken transfer ended
            if status == 200:
                self._skip(self.got)  # no ranges here: the start again, which we already have
                return
            body = _body_start(resp)
            self._drop(reuse=False)
            raise self._error(status, body)

    def _request(self) -> http.client.HTTPResponse:
        url = self._url
        for _ in range(MAX_REDIRECTS + 1):
            origin = _origin_of(url)
            headers = {"Accept-Encoding": "identity", "User-Agent": "atoll"}
            if origin == self._origin:
                headers.update(self._headers())  # credentials only ever go to the registry itself
            if self.got:
                headers["Range"] = f"bytes={self.got}-"
            conn, reused = self._connections.get(origin)
            self._conn, self._conn_origin = conn, origin
            parts = urlsplit(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn.close()
                if not reused:
                    raise
                # The server had closed the kept-alive connection meanwhile: that is no failure.
                self._conn = conn = self._connections.new(origin)
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            self._resp = resp
            location = resp.getheader("location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            self._drop(reuse=True, drain=True)
            url = urljoin(url, location)
        raise RegistryError(f"{self._what}: more than {MAX_REDIRECTS} redirects")

    def _skip(self, count: int) -> None:
        assert self._resp is not None
        while count:
            data = self._resp.read(min(count, READ_SIZE))
            if not data:
                raise RegistryError(f"{self._what}: the registry restarted the blob and then cut it short")
            count -= len(data)

    def _drop(self, *, reuse: bool, drain: bool = False) -> None:
        resp, conn = self._resp, self._conn
        self._resp = self._conn = None
        if resp is not None and drain:
            try:
                _body_start(resp)  # small answers (errors, redirects): read so the connection can go on
            except (OSError, http.client.HTTPException):
                reuse = False
        keep = reuse and resp is not None and resp.isclosed() and not resp.will_close
        if resp is not None:
            resp.close()
        if conn is not None:
            if keep:
                self._connections.put(self._conn_origin, conn)
            else:
                conn.close()

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Cancelled(f"{self._what}: the pull was cancelled")


def _connect_with_buffer(address: tuple[str, int], timeout: float | None, size: int) -> socket.socket:
    """``socket.create_connection``, with a receive buffer of ``size`` set before the handshake (so
    the window scale allows it): the registry can send that far ahead of what we have processed."""
    host, port = address
    failure: OSError | None = None
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
            except OSError:  # not privileged: as much as net.core.rmem_max allows
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            sock.settimeout(timeout)
            sock.connect(addr)
            return sock
        except OSError as exc:
            sock.close()
            failure = exc
    raise failure or OSError(f"no address for {host}")


def _origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _range_start(resp: http.client.HTTPResponse) -> int:
    value = resp.getheader("content-range", "")  # "bytes 100-199/200"
    try:
        return int(value.split(" ", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return -1


def _body_start(resp: http.client.HTTPResponse, limit: int = 65536) -> bytes:
    return resp.read(limit)
