"""Images as the catalog and the layer store both see them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image config (``config`` in the config JSON)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    """VOLUME paths: each gets an anonymous volume unless a mount covers it."""

    @classmethod
    def from_oci(cls, config: dict[str, Any] | None) -> ImageConfig:
        c = config or {}
        return cls(
            entrypoint=list(c["Entrypoint"]) if c.get("Entrypoint") is not None else None,
            cmd=list(c["Cmd"]) if c.get("Cmd") is not None else None,
            env=list(c.get("Env") or []),
            working_dir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
            labels=dict(c.get("Labels") or {}),
            stop_signal=c.get("StopSignal") or "",
            exposed_ports=sorted((c.get("ExposedPorts") or {}).keys()),
            volumes=sorted((c.get("Volumes") or {}).keys()),
        )

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Env": list(self.env)}
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.user:
            out["User"] = self.user
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        return out


@dataclass(frozen=True)
class ImageRecord:
    """One image held by a host's layer store.

    ``id`` is the sha256 digest of the config blob ("sha256:<hex>"), as in Docker. ``layers`` are the
    uncompressed layer digests (diff_ids), bottom first; they key the unpacked layer directories.
    """

    id: str
    repo_tags: list[str]
    layers: list[str]
    size: int
    created: str
    architecture: str
    os: str
    config: ImageConfig
    manifest_digest: str = ""


@dataclass(frozen=True)
class ImageDiskUsage:
    """How full the filesystem holding a host's image store is, for the image GC policy."""

    total: int
    free: int
    images: int
    """Bytes of the images the host holds (their unpacked size)."""

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.total - self.free) / self.total if self.total else 0.0
