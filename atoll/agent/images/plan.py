"""What an archive says it holds, checked before anything is written: images as plans of blobs to fetch.

Reading an archive happens in two steps. First its small JSON documents (manifest.json, index.json,
manifests, configs) are read whole, verified against their digests and validated into
:class:`ImagePlan`s; a malformed archive fails here having written nothing. Then the store executes
the plans, streaming each layer blob through verification into its directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from atoll.agent.images.compression import Compression
from atoll.agent.images.sources import BlobSource
from atoll.agent.images.streams import HashingReader, check_digest, read_limited, verify
from atoll.model.errors import BadImage
from atoll.model.image import ImageConfig, ImageRecord

JSON_LIMIT = 16 << 20
"""Configs with long histories reach a few hundred KiB; 16 MiB leaves room and still bounds memory."""


@dataclass(frozen=True)
class LayerPlan:
    name: str
    """The archive member (or file) holding the blob."""
    diff_id: str
    """sha256 of the uncompressed tar, as the config demands."""
    digest: str | None = None
    """sha256 of the blob as stored, when something names it (OCI descriptors, ``blobs/sha256/<hex>``)."""
    size: int | None = None
    compression: Compression | None = None
    """None: sniff the first bytes (docker save, whose layers carry no media type)."""

    @property
    def label(self) -> str:
        return f"layer {self.diff_id} ({self.name})"


@dataclass(frozen=True)
class ParsedConfig:
    architecture: str
    os: str
    created: str
    config: ImageConfig
    diff_ids: list[str]


@dataclass
class ImagePlan:
    config_digest: str
    config_blob: bytes
    parsed: ParsedConfig
    layers: list[LayerPlan]
    repo_tags: list[str]
    manifest_digest: str = ""
    extra_blobs: dict[str, bytes] = field(default_factory=dict)
    """Manifests (and indexes) to keep in blobs/, by digest."""

    def record(self, repo_tags: list[str], size: int) -> ImageRecord:
        """The image this plan makes, once its layers (of ``size`` bytes unpacked) are in place."""
        return ImageRecord(
            id=self.config_digest,
            repo_tags=repo_tags,
            layers=list(self.parsed.diff_ids),
            size=size,
            created=self.parsed.created,
            architecture=self.parsed.architecture,
            os=self.parsed.os,
            config=self.parsed.config,
            manifest_digest=self.manifest_digest,
        )


def read_blob(src: BlobSource, name: str, *, digest: str | None, size: int | None = None) -> bytes:
    """Read a small blob whole and check it against the digest and size that name it."""
    with src.open(name) as blob:
        if size is not None and blob.size != size:
            raise BadImage(f"{blob.where}: size mismatch: {blob.size} bytes, descriptor says {size}")
        hashed = HashingReader(blob)
        data = read_limited(hashed, JSON_LIMIT, blob.where)
        verify(hashed.digest, digest, blob.where)
    return data


def load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadImage(f"{what}: invalid JSON: {exc}") from None


def want_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadImage(f"{what}: expected a JSON object, not {type(value).__name__}")
    return value


def want_str_list(value: Any, what: str, *, optional: bool = False) -> list[str]:
    if value is None and optional:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadImage(f"{what}: expected a list of strings")
    return value


def want_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadImage(f"{what}: expected a string, not {type(value).__name__}")
    return value


def parse_config(blob: bytes, what: str) -> ParsedConfig:
    doc = want_dict(load_json(blob, what), what)
    rootfs = want_dict(doc.get("rootfs"), f"{what}: rootfs")
    if rootfs.get("type") != "layers":
        raise BadImage(f"{what}: rootfs.type must be 'layers', not {rootfs.get('type')!r}")
    diff_ids = want_str_list(rootfs.get("diff_ids"), f"{what}: rootfs.diff_ids", optional=True)
    for i, diff_id in enumerate(diff_ids):
        check_digest(diff_id, f"{what}: rootfs.diff_ids[{i}]")
    return ParsedConfig(
        architecture=want_str(doc.get("architecture"), f"{what}: architecture"),
        os=want_str(doc.get("os"), f"{what}: os"),
        created=want_str(doc.get("created"), f"{what}: created"),
        config=_runtime_config(doc.get("config"), f"{what}: config"),
        diff_ids=diff_ids,
    )


def _runtime_config(value: Any, what: str) -> ImageConfig:
    """Type-check the fields :meth:`ImageConfig.from_oci` reads, so bad JSON can't slip in odd types."""
    if value is None:
        return ImageConfig()
    c = want_dict(value, what)
    clean: dict[str, Any] = {}
    for key in ("Entrypoint", "Cmd"):
        v = c.get(key)
        clean[key] = [v] if isinstance(v, str) else (None if v is None else want_str_list(v, f"{what}.{key}"))
    clean["Env"] = want_str_list(c.get("Env"), f"{what}.Env", optional=True)
    for key in ("WorkingDir", "User", "StopSignal"):
        clean[key] = want_str(c.get(key), f"{what}.{key}")
    labels = c.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise BadImage(f"{what}.Labels: expected an object of strings")
    clean["Labels"] = labels
    ports = c.get("ExposedPorts") or {}
    clean["ExposedPorts"] = want_dict(ports, f"{what}.ExposedPorts")
    clean["Volumes"] = want_dict(c.get("Volumes") or {}, f"{what}.Volumes")
    return ImageConfig.from_oci(clean)


def merge(plans: list[ImagePlan]) -> list[ImagePlan]:
    """One plan per image: an archive may list an image once per tag."""
    merged: dict[str, ImagePlan] = {}
    for plan in plans:
        seen = merged.get(plan.config_digest)
        if seen is None:
            merged[plan.config_digest] = plan
            continue
        seen.repo_tags.extend(t for t in plan.repo_tags if t not in seen.repo_tags)
        seen.manifest_digest = seen.manifest_digest or plan.manifest_digest
        seen.extra_blobs.update(plan.extra_blobs)
    return list(merged.values())
