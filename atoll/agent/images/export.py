"""Exporting a stored image as an OCI image-layout tar, so another host can import it unchanged.

It reuses what a push reads (the config, the kept layer blobs, a manifest naming exactly them), so the
same images export as push: pulled and built ones, not ones imported from archives (their layers keep
no blob). The importer verifies every digest on the other side, so a copy is as trusted as its source.
The tar is written to a scratch file first (tarfile wants a seekable target for nothing, but writing it
in a thread keeps the event loop free) and streamed from there.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from atoll.agent.images.ocilayout import NAME_FULL
from atoll.agent.images.remote import PushSource
from atoll.agent.registry.push import manifest_for

CHUNK = 1 << 20


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_layout(src: PushSource, dest: Path) -> None:
    manifest, media_type = manifest_for(src)
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": media_type,
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {NAME_FULL: src.record.repo_tags[0]} if src.record.repo_tags else {},
            }
        ],
    }
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        _add_bytes(tar, f"blobs/sha256/{manifest_digest[7:]}", manifest)
        _add_bytes(tar, f"blobs/sha256/{src.record.id[7:]}", src.config)
        seen = set()
        for layer in src.layers:
            if layer.digest in seen:
                continue
            seen.add(layer.digest)
            tar.add(layer.path, arcname=f"blobs/sha256/{layer.digest[7:]}", recursive=False)


async def export_layout(src: PushSource, scratch: Path) -> AsyncIterator[bytes]:
    dest = scratch / "export.tar"
    try:
        await asyncio.to_thread(write_layout, src, dest)
        with dest.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk
    finally:
        dest.unlink(missing_ok=True)
