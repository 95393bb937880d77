"""OCI image layouts (``oci-layout`` + ``index.json`` + ``blobs/sha256/``), as archives or directories.

Each entry of index.json is one image: an image manifest, or an index from which the host's platform
is picked (attestation manifests are skipped). Its name comes from the annotations:
``io.containerd.image.name`` (a full reference, written by Docker and containerd) when present, else
``org.opencontainers.image.ref.name`` (often a bare tag such as "latest"); the catalog normalizes.
``manifest_digest`` is the digest index.json points at: the index itself for a multi-platform image,
as in Docker's RepoDigests.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from atoll.agent.images.compression import Compression
from atoll.agent.images.plan import (
    ImagePlan,
    LayerPlan,
    load_json,
    parse_config,
    read_blob,
    want_dict,
    want_str,
)
from atoll.agent.images.sources import BlobSource
from atoll.agent.images.streams import check_digest, digest_hex
from atoll.model.errors import BadImage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": Compression.NONE,
    "application/vnd.oci.image.layer.v1.tar+gzip": Compression.GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd": Compression.ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar": Compression.NONE,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": Compression.GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": Compression.ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar": Compression.NONE,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": Compression.GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": Compression.GZIP,
}
NAME_FULL = "io.containerd.image.name"
NAME_REF = "org.opencontainers.image.ref.name"
_MAX_NESTING = 4
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_architecture() -> str:
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int | None
    annotations: dict[str, str]
    platform: dict[str, Any]

    @property
    def blob_name(self) -> str:
        return f"blobs/sha256/{digest_hex(self.digest)}"


def parse_descriptor(value: Any, what: str) -> Descriptor:
    d = want_dict(value, what)
    size = d.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadImage(f"{what}: size must be a non-negative integer")
    annotations = d.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise BadImage(f"{what}: annotations must be an object of strings")
    return Descriptor(
        media_type=want_str(d.get("mediaType"), f"{what}: mediaType"),
        digest=check_digest(d.get("digest"), f"{what}: digest"),
        size=size,
        annotations=annotations,
        platform=want_dict(d.get("platform") or {}, f"{what}: platform"),
    )


def _descriptors(doc: dict[str, Any], key: str, what: str) -> list[Descriptor]:
    items = doc.get(key)
    if not isinstance(items, list):
        raise BadImage(f"{what}: {key} must be a list")
    return [parse_descriptor(item, f"{what} {key}[{i}]") for i, item in enumerate(items)]


def names(annotations: dict[str, str]) -> list[str]:
    name = annotations.get(NAME_FULL) or annotations.get(NAME_REF)
    return [name] if name else []


def oci_plans(src: BlobSource) -> list[ImagePlan]:
    layout = want_dict(load_json(read_blob(src, "oci-layout", digest=None), "oci-layout"), "oci-layout")
    version = layout.get("imageLayoutVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise BadImage(f"oci-layout: unsupported imageLayoutVersion {version!r}")
    index = want_dict(load_json(read_blob(src, "index.json", digest=None), "index.json"), "index.json")
    entries = _descriptors(index, "manifests", "index.json")
    if not entries:
        raise BadImage("index.json: the layout holds no images")
    return [_image(src, d, names(d.annotations), f"index.json manifests[{i}]") for i, d in enumerate(entries)]


def manifest_digests(src: BlobSource) -> dict[str, tuple[str, bytes]]:
    """Config digest -> (manifest digest, manifest blob) for the manifests index.json lists directly.

    Docker 25+ writes index.json beside manifest.json; this gives those imports their manifest digest.
    """
    found: dict[str, tuple[str, bytes]] = {}
    index = want_dict(load_json(read_blob(src, "index.json", digest=None), "index.json"), "index.json")
    for i, desc in enumerate(_descriptors(index, "manifests", "index.json")):
        if desc.media_type not in MANIFEST_TYPES:
            continue
        blob = read_blob(src, desc.blob_name, digest=desc.digest, size=desc.size)
        doc = want_dict(load_json(blob, desc.blob_name), desc.blob_name)
        config = parse_descriptor(doc.get("config"), f"index.json manifests[{i}] config")
        found[config.digest] = (desc.digest, blob)
    return found


def _image(src: BlobSource, desc: Descriptor, tags: list[str], what: str, depth: int = 0) -> ImagePlan:
    blob = read_blob(src, desc.blob_name, digest=desc.digest, size=desc.size)
    where = f"{what} ({desc.blob_name})"
    doc = want_dict(load_json(blob, where), where)
    own_type = want_str(doc.get("mediaType"), f"{where}: mediaType")
    media_type = desc.media_type or own_type
    if own_type and desc.media_type and own_type != desc.media_type:
        raise BadImage(f"{where}: mediaType {own_type} contradicts its descriptor's {desc.media_type}")
    if media_type in INDEX_TYPES:
        if depth >= _MAX_NESTING:
            raise BadImage(f"{where}: indexes nested too deeply")
        child = _pick_platform(_descriptors(doc, "manifests", where), where)
        plan = _image(src, child, tags, f"{where} -> {child.digest}", depth + 1)
        plan.manifest_digest = desc.digest
        plan.extra_blobs[desc.digest] = blob
        return plan
    if media_type not in MANIFEST_TYPES:
        raise BadImage(f"{where}: unsupported media type {media_type or '(none)'}")
    config = parse_descriptor(doc.get("config"), f"{where}: config")
    if config.media_type not in CONFIG_TYPES:
        raise BadImage(f"{where}: unsupported config media type {config.media_type or '(none)'}")
    config_blob = read_blob(src, config.blob_name, digest=config.digest, size=config.size)
    parsed = parse_config(config_blob, f"config {config.digest}")
    layer_descs = _descriptors(doc, "layers", where)
    if len(layer_descs) != len(parsed.diff_ids):
        counts = f"{len(layer_descs)} layers but {len(parsed.diff_ids)} diff_ids"
        raise BadImage(f"{where}: {counts} in config {config.digest}")
    layers = []
    for i, (layer, diff_id) in enumerate(zip(layer_descs, parsed.diff_ids, strict=True)):
        compression = LAYER_TYPES.get(layer.media_type)
        if compression is None:
            raise BadImage(f"{where}: layers[{i}]: unsupported media type {layer.media_type or '(none)'}")
        layers.append(LayerPlan(layer.blob_name, diff_id, layer.digest, layer.size, compression))
    return ImagePlan(
        config_digest=config.digest,
        config_blob=config_blob,
        parsed=parsed,
        layers=layers,
        repo_tags=list(tags),
        manifest_digest=desc.digest,
        extra_blobs={desc.digest: blob},
    )


def pick_platform(entries: list[Descriptor], where: str) -> Descriptor:
    """The host's ``linux/<arch>`` image among an index's entries (a registry pull chooses the same way)."""
    return _pick_platform(entries, where)


def _pick_platform(entries: list[Descriptor], where: str) -> Descriptor:
    arch = host_architecture()
    images = [
        d
        for d in entries
        if d.media_type in MANIFEST_TYPES | INDEX_TYPES
        and d.annotations.get("vnd.docker.reference.type") != "attestation-manifest"
        and d.platform.get("os") != "unknown"
    ]
    for d in images:
        if d.platform.get("os") == "linux" and d.platform.get("architecture") == arch:
            return d
    if len(images) == 1:
        return images[0]  # a single-platform image in an index: take it, even if it won't run here
    raise BadImage(f"{where}: no linux/{arch} image among its {len(images)} platforms")
