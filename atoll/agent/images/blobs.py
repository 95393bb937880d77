"""Layer blobs kept beside their unpacked layers, so images can be pushed as they came.

A pushed layer must be a tar whose sha256 is the diff_id the image config names. Re-tarring an unpacked
directory reproduces that only if the tar is rebuilt byte for byte, which needs the original headers
(Docker keeps "tar-split" data for this). We keep the blob itself instead: ``layers/<hex>/blob``,
described in layer.json as ``{"blob": {"digest", "size", "media_type"}, "sources": [...]}``. Pulled
layers keep the compressed blob as the registry sent it, so a push of a pulled image uploads exactly the
blobs (and digests) its registry already knows, and cross-repository mounts can work. Built images keep
their root filesystem tar. Layers imported from archives keep nothing: such images can't be pushed.

The cost is disk: a layer is stored twice, once unpacked and once compressed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atoll.agent.images.compression import SNIFF_BYTES, Compression, sniff
from atoll.agent.images.streams import CHUNK

TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPES = {
    Compression.NONE: TAR,
    Compression.GZIP: "application/vnd.oci.image.layer.v1.tar+gzip",
    Compression.ZSTD: "application/vnd.oci.image.layer.v1.tar+zstd",
}


@dataclass(frozen=True)
class KeptBlob:
    path: Path
    digest: str
    size: int
    media_type: str
    sources: tuple[str, ...] = ()
    """Repositories (``host/path``) known to hold this blob: candidates for a cross-repository mount."""


def blob_meta(digest: str, size: int, media_type: str, sources: list[str]) -> dict[str, Any]:
    return {"blob": {"digest": digest, "size": size, "media_type": media_type}, "sources": sources}


def blob_meta_for_file(path: Path, diff_id: str) -> dict[str, Any] | None:
    """Describe a built image's root filesystem tar; None if its compression has no layer media type."""
    with open(path, "rb") as f:
        kind = sniff(f.read(SNIFF_BYTES))
        media_type = MEDIA_TYPES.get(kind)
        if media_type is None:
            return None
        if kind is Compression.NONE:
            digest = diff_id
        else:
            f.seek(0)
            h = hashlib.sha256()
            while chunk := f.read(CHUNK):
                h.update(chunk)
            digest = "sha256:" + h.hexdigest()
    return blob_meta(digest, path.stat().st_size, media_type, [])


def kept_blob(layer_dir: Path) -> KeptBlob | None:
    try:
        doc = json.loads((layer_dir / "layer.json").read_bytes())
        blob = doc["blob"]
        sources = tuple(s for s in doc.get("sources") or [] if isinstance(s, str))
        kept = KeptBlob(
            layer_dir / "blob", str(blob["digest"]), int(blob["size"]), str(blob["media_type"]), sources
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return kept if kept.path.is_file() else None
