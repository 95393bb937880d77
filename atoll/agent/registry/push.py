"""Pushing an image from the host's layer store to a registry.

Blobs first, manifest last, so the registry never holds a manifest whose blobs it lacks. For each blob
(layers in parallel, then the config): a ``HEAD`` says whether the repository has it already; if not,
and the layer was pulled from another repository of the same registry, a cross-repository mount
(``POST ...?mount=&from=``) asks the registry to link it without sending a byte; otherwise it is
uploaded whole from the kept blob (``images/blobs.py``). The manifest is the one the image was pulled
with when it still describes exactly these blobs (so the digest is unchanged), else a new OCI manifest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from atoll.agent.images.blobs import KeptBlob
from atoll.agent.images.ocilayout import MANIFEST_TYPES, OCI_MANIFEST
from atoll.agent.images.remote import PushSource
from atoll.agent.registry.auth import pull_scope, push_scope
from atoll.agent.registry.client import RegistryClient
from atoll.agent.registry.pull import short
from atoll.model.reference import ImageReference
from atoll.model.registry import Pushed, TransferEvent

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

Emit = Callable[[TransferEvent], None]


def manifest_for(src: PushSource) -> tuple[bytes, str]:
    """(bytes, media type): a stored manifest naming exactly these blobs, else a new OCI manifest."""
    digests = [layer.digest for layer in src.layers]
    for data in src.manifests:
        try:
            doc = json.loads(data)
            media_type = doc.get("mediaType") or OCI_MANIFEST
            config = doc["config"]
            layers = [d["digest"] for d in doc["layers"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if media_type in MANIFEST_TYPES and config.get("digest") == src.record.id and layers == digests:
            return data, media_type
    new: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": src.record.id, "size": len(src.config)},
        "layers": [{"mediaType": x.media_type, "digest": x.digest, "size": x.size} for x in src.layers],
    }
    return json.dumps(new, separators=(",", ":")).encode(), OCI_MANIFEST


async def push(client: RegistryClient, src: PushSource, ref: ImageReference, emit: Emit) -> Pushed:
    manifest, media_type = manifest_for(src)
    scopes = [push_scope(ref.path)]
    await client.blob_exists(ref.path, src.record.id, scopes)  # authenticates before anything is sent
    unique = list({layer.digest: layer for layer in src.layers}.values())
    await asyncio.gather(*(_push_layer(client, ref, layer, emit) for layer in unique))
    sources = tuple(dict.fromkeys(s for layer in src.layers for s in layer.sources))
    if not await client.blob_exists(ref.path, src.record.id, scopes):
        location = await _mount(client, ref, src.record.id, sources)
        if location is not None:
            await client.put_blob_bytes(location, src.record.id, src.config, scopes)
    digest = await client.put_manifest(ref.path, ref.tag or "latest", manifest, media_type, scopes)
    return Pushed(digest=digest, size=len(manifest))


async def _mount(
    client: RegistryClient, ref: ImageReference, digest: str, sources: tuple[str, ...]
) -> str | None:
    """Mount ``digest`` from the first other repository of this registry known to hold it.

    None if mounted; else the URL of an upload session to send the blob to."""
    scopes = [push_scope(ref.path)]
    for source in sources:
        host, _, path = source.partition("/")
        if host == client.host and path != ref.path:
            return await client.mount_blob(ref.path, digest, path, [*scopes, pull_scope(path)])
    return await client.start_upload(ref.path, scopes)


async def _push_layer(client: RegistryClient, ref: ImageReference, layer: KeptBlob, emit: Emit) -> None:
    ident = short(layer.digest)
    scopes = [push_scope(ref.path)]
    emit(TransferEvent("Preparing", ident))
    if await client.blob_exists(ref.path, layer.digest, scopes):
        emit(TransferEvent("Layer already exists", ident))
        return
    location = await _mount(client, ref, layer.digest, layer.sources)
    if location is None:
        mounted_from = next(s.partition("/")[2] for s in layer.sources if s.startswith(client.host + "/"))
        emit(TransferEvent(f"Mounted from {mounted_from}", ident))
        return

    def progress(n: int) -> None:
        emit(TransferEvent("Pushing", ident, n, layer.size))

    await client.put_blob(location, layer.digest, layer.path, layer.size, scopes, progress)
    emit(TransferEvent("Pushed", ident, layer.size, layer.size))
