"""A real registry (Debian's ``docker-registry``, the CNCF distribution server) on loopback, for tests.

Each one gets a free port, its own config file and storage under a temporary directory, and is stopped
(and its files removed) by the context manager. Images are put into it by ``upload`` below, a minimal
pusher written straight against the distribution API, so tests of our pull don't depend on our push.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.images import factory

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_registry() -> None:
    if not Path(REGISTRY).exists():
        pytest.skip("docker-registry is not installed (scripts/setup-system installs it)")


@dataclass
class Registry:
    base: Path
    port: int
    tls: bool = False
    auth: tuple[str, str] | None = None
    """(user, password) accepted by an htpasswd registry."""
    ca: Path | None = None
    bearer: str = ""
    """A token to send (for a registry with token auth)."""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def storage(self) -> Path:
        return self.base / "storage"

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.bearer}"} if self.bearer else {}
        verify = ssl.create_default_context(cafile=str(self.ca)) if self.ca else True
        return httpx.Client(
            base_url=self.url, auth=self.auth, verify=verify, headers=headers, trust_env=False
        )

    def blob_file(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


@contextlib.contextmanager
def running_registry(
    base: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    tls: tuple[Path, Path, Path] | None = None,
    token: dict[str, str] | None = None,
) -> Iterator[Registry]:
    """``tls``: (ca.crt, server.crt, server.key). ``token``: realm, service, issuer, rootcertbundle."""
    need_registry()
    base.mkdir(parents=True, exist_ok=True)
    reg = Registry(base=base, port=free_port(), tls=tls is not None, auth=htpasswd)
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(reg.storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": reg.host, "secret": "atoll-test-secret"},
    }
    if tls is not None:
        reg.ca = tls[0]
        config["http"]["tls"] = {"certificate": str(tls[1]), "key": str(tls[2])}
    if htpasswd is not None:
        line = subprocess.run(["htpasswd", "-Bbn", *htpasswd], check=True, capture_output=True).stdout.strip()
        (base / "htpasswd").write_bytes(line + b"\n")
        config["auth"] = {"htpasswd": {"realm": "atoll-test", "path": str(base / "htpasswd")}}
    if token is not None:
        config["auth"] = {"token": token}
    (base / "config.yml").write_text(json.dumps(config))
    log = open(base / "registry.log", "wb")  # noqa: SIM115 - the child owns it
    reg.proc = subprocess.Popen([REGISTRY, "serve", str(base / "config.yml")], stdout=log, stderr=log)
    log.close()
    try:
        _wait_ready(reg)
        yield reg
    finally:
        reg.proc.terminate()
        try:
            reg.proc.wait(10)
        except subprocess.TimeoutExpired:
            reg.proc.kill()
            reg.proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def _wait_ready(reg: Registry) -> None:
    deadline = time.monotonic() + 20
    assert reg.proc is not None
    while time.monotonic() < deadline:
        if reg.proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(reg.base / 'registry.log').read_text()[-2000:]}")
        try:
            httpx.get(f"{reg.url}/v2/", verify=False, timeout=1, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not come up in 20 s")


def upload_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    digest = factory.sha256(data)
    if client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return digest
    resp = client.post(f"/v2/{repo}/blobs/uploads/")
    assert resp.status_code == 202, resp.text
    location = httpx.URL(str(client.base_url)).join(resp.headers["location"])
    resp = client.put(location.copy_merge_params({"digest": digest}), content=data)
    assert resp.status_code == 201, resp.text
    return digest


def upload_manifest(client: httpx.Client, repo: str, ref: str, data: bytes, media_type: str) -> str:
    resp = client.put(f"/v2/{repo}/manifests/{ref}", content=data, headers={"Content-Type": media_type})
    assert resp.status_code == 201, resp.text
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_manifest(client: httpx.Client, repo: str, image: factory.Image, *, docker: bool = False) -> bytes:
    """Upload ``image``'s config and gzip layers; return its (not yet uploaded) manifest."""
    config = image.config_json()
    upload_blob(client, repo, config)
    layers = []
    for tar in image.layers:
        blob = factory.gz(tar)
        upload_blob(client, repo, blob)
        media = "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker else factory.OCI_GZIP_LAYER
        layers.append(factory.descriptor(media, blob))
    config_type = "application/vnd.docker.container.image.v1+json" if docker else factory.OCI_CONFIG
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else factory.OCI_MANIFEST,
            "config": factory.descriptor(config_type, config),
            "layers": layers,
        }
    ).encode()


def upload(reg: Registry, repo: str, tag: str, image: factory.Image, *, docker: bool = False) -> str:
    """Put ``image`` into the registry as ``repo:tag``; returns the manifest digest."""
    with reg.http() as client:
        manifest = image_manifest(client, repo, image, docker=docker)
        media = DOCKER_MANIFEST if docker else factory.OCI_MANIFEST
        return upload_manifest(client, repo, tag, manifest, media)


def upload_index(reg: Registry, repo: str, tag: str, images: dict[str, factory.Image]) -> str:
    """A multi-platform image: ``{"amd64": image, "arm64": other}`` under one index."""
    with reg.http() as client:
        entries = []
        for arch, image in images.items():
            manifest = image_manifest(client, repo, image)
            digest = upload_manifest(client, repo, factory.sha256(manifest), manifest, factory.OCI_MANIFEST)
            entries.append(
                {
                    "mediaType": factory.OCI_MANIFEST,
                    "digest": digest,
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        return upload_manifest(client, repo, tag, index, OCI_INDEX)
