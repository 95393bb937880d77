"""How this host reaches registries: mirrors, TLS trust per registry, and the insecure opt-in.

- **Mirrors** (``ATOLL_REGISTRY_MIRRORS=docker.io=http://127.0.0.1:5000,...``): pulls of images on a
  registry are tried on its mirrors first, in order, then on the registry itself. A mirror URL names its
  scheme, so ``http://`` is an explicit choice. Pushes never go to mirrors.
- **TLS** is verified against the system's trust store, plus, for registry ``host:port``, every
  ``*.crt`` in ``ATOLL_REGISTRY_CA_DIR/<host:port>/`` (Docker's ``certs.d`` layout; ``client.cert`` with
  ``client.key`` there is presented as a client certificate).
- **Insecure** registries (``ATOLL_INSECURE_REGISTRIES=127.0.0.1:5000``) are reached over HTTPS without
  verification, or over plain HTTP if they don't speak TLS. Only the registries listed: there is no
  wildcard, so nobody weakens every pull by accident.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from atoll.model.errors import InvalidInput
from atoll.model.reference import DOCKER_HUB

DEFAULT_CA_DIR = Path("/etc/atoll/certs.d")


@dataclass(frozen=True)
class RegistryOptions:
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Registry domain -> mirror base URLs (``scheme://host[:port]``)."""
    insecure: frozenset[str] = frozenset()
    """Registries (``host:port``) reached without TLS verification, or over plain HTTP."""
    ca_dir: Path = DEFAULT_CA_DIR
    """``<ca_dir>/<host:port>/*.crt``: extra CAs trusted for that registry only."""
    parallel_downloads: int = 4
    """Layers fetched at once per pull; Docker's default is 3. More does not help on one link."""
    max_attempts: int = 5
    """Per blob: a broken transfer is resumed (or retried) this many times, with exponential back-off."""
    backoff: float = 0.2
    """Seconds before the first retry; doubled each time."""
    receive_buffer: int = 32 << 20
    """Socket receive buffer for layer downloads (0: the kernel's autotuning). A large one lets the
    registry send ahead while a layer's last piece is being inflated and written, instead of both
    sides taking turns, which costs most on a busy host, where each turn waits for a CPU."""
    worker_processes: bool = True
    """Download and unpack each layer in a worker process (``layerproc.py``) rather than a thread of
    the agent: on a busy host, threads sharing one GIL made a pull 2.4x slower than skopeo."""
    release_blob_pages: bool = True
    """Drop each kept blob's pages from the page cache once written out (``syncfs.py``,
    ``release_after_writeback``): they are read again only by a push, and reusing them is cheaper
    than taking fresh memory for the next bytes."""

    def ssl_context(self, host: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        certs = self.ca_dir / host
        if certs.is_dir():
            for ca in sorted(certs.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(ca))
            cert, key = certs / "client.cert", certs / "client.key"
            if cert.is_file() and key.is_file():
                ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def is_insecure(self, host: str) -> bool:
        return host in self.insecure

    def mirrors_of(self, domain: str) -> tuple[str, ...]:
        return tuple(self.mirrors.get(domain, ()))


def parse_mirrors(text: str) -> dict[str, tuple[str, ...]]:
    """``docker.io=http://127.0.0.1:5000,docker.io=https://m2,ghcr.io=https://m3``."""
    out: dict[str, list[str]] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        domain, sep, url = item.partition("=")
        parts = urlsplit(url.strip())
        if not sep or parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(f"ATOLL_REGISTRY_MIRRORS: {item!r} is not REGISTRY=http(s)://HOST[:PORT]")
        domain = domain.strip()
        if domain in ("index.docker.io", "registry-1.docker.io"):
            domain = DOCKER_HUB
        out.setdefault(domain, []).append(f"{parts.scheme}://{parts.netloc}")
    return {k: tuple(v) for k, v in out.items()}


def parse_insecure(text: str) -> frozenset[str]:
    return frozenset(filter(None, (x.strip() for x in text.split(","))))
