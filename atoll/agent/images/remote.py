"""Installing an image whose blobs arrive over the network, and reading one back out for a push.

A pull first lays the image's small documents (manifests, config) out in a scratch directory as an OCI
image layout, so the same code that validates imported layouts (``ocilayout.py``, ``plan.py``) checks
them. Layers the store already holds are pinned and never fetched. The others are fetched concurrently
by the caller's ``fetch`` into that layout and each is unpacked, verified and installed as soon as it is
complete, while later ones still download; the compressed blob is kept beside the layer (``blobs.py``).
It is one ``ImportJob``: the image record is written only once every layer is in, and any failure
(or cancellation) undoes what this pull made, after waiting for unpacks already running in threads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from atoll.agent.images.blobs import MEDIA_TYPES, KeptBlob, blob_meta, kept_blob
from atoll.agent.images.compression import Compression
from atoll.agent.images.formats import read_plans
from atoll.agent.images.importer import ImportJob
from atoll.agent.images.layout import Layout
from atoll.agent.images.ledger import Ledger
from atoll.agent.images.plan import ImagePlan, LayerPlan
from atoll.agent.images.records import StoredImage
from atoll.agent.images.sources import DirectorySource
from atoll.model.errors import BadImage, NotFound
from atoll.model.image import ImageRecord

Fetch = Callable[[LayerPlan, Path], Awaitable[None]]
"""Download the blob of a layer to the given path, verified against ``plan.digest``."""
Report = Callable[[LayerPlan, str], None]
"""Told about each layer's steps: "Already exists", "Extracting", "Pull complete"."""


@dataclass(frozen=True)
class PushSource:
    """What a push needs of a stored image: its config, its layers' kept blobs, and known manifests."""

    record: ImageRecord
    config: bytes
    layers: list[KeptBlob]
    manifests: list[bytes]


async def install_remote(
    layout: Layout,
    ledger: Ledger,
    scratch: Path,
    fetch: Fetch,
    report: Report,
    *,
    source: str,
    repo_tag: str,
    unpackers: int = 2,
) -> ImageRecord:
    """Install the one image laid out in ``scratch`` (index.json and its small blobs already there)."""
    src = DirectorySource(scratch)
    plans = await asyncio.to_thread(read_plans, src)
    if len(plans) != 1:
        raise BadImage(f"{source}: expected one image, found {len(plans)}")
    plan = plans[0]
    job = ImportJob(layout, ledger, scratch)
    running: list[asyncio.Future[int]] = []
    try:
        blobs = [job.add_blob(b) for b in (plan.config_blob, *plan.extra_blobs.values())]
        slots = asyncio.Semaphore(unpackers)
        sizes = await _layers(job, src, scratch, plan, fetch, report, source, running, slots)
        record = plan.record([repo_tag] if repo_tag else [], sum(sizes))
        await asyncio.to_thread(job.commit, [StoredImage(record, blobs)])
    except BaseException:
        await asyncio.gather(*running, return_exceptions=True)  # unpacks in threads can't be cancelled
        job.abort()
        raise
    return record


async def _layers(
    job: ImportJob,
    src: DirectorySource,
    scratch: Path,
    plan: ImagePlan,
    fetch: Fetch,
    report: Report,
    source: str,
    running: list[asyncio.Future[int]],
    unpack_slots: asyncio.Semaphore,
) -> list[int]:
    loop = asyncio.get_running_loop()
    sizes: dict[str, int] = {}
    todo: dict[str, LayerPlan] = {}
    for layer in plan.layers:
        if layer.diff_id in sizes or layer.diff_id in todo:
            continue
        size = job.pin_existing(layer.diff_id)
        if size is None:
            todo[layer.diff_id] = layer
        else:
            sizes[layer.diff_id] = size
            report(layer, "Already exists")

    async def one(layer: LayerPlan) -> None:
        if layer.digest is None or layer.size is None:
            raise BadImage(f"{source}: {layer.label}: descriptor without digest or size")
        path = scratch / layer.name
        await fetch(layer, path)
        async with unpack_slots:
            report(layer, "Extracting")
            media_type = MEDIA_TYPES.get(layer.compression or Compression.NONE, MEDIA_TYPES[Compression.NONE])
            meta = blob_meta(layer.digest, layer.size, media_type, [source])
            verified = replace(layer, digest=None)  # the download checked the blob's digest already
            future = loop.run_in_executor(None, lambda: job.ensure_layer(src, verified, keep=path, meta=meta))
            running.append(future)
            sizes[layer.diff_id] = await asyncio.shield(future)
        report(layer, "Pull complete")

    tasks = [asyncio.ensure_future(one(layer)) for layer in todo.values()]
    try:
        if tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [sizes[layer.diff_id] for layer in plan.layers]


def push_source(layout: Layout, ledger: Ledger, image_id: str) -> PushSource:
    """Read what a push needs; NotFound or BadImage (naming the layer) if it can't be pushed."""
    with ledger.lock:
        stored = ledger.images.get(image_id)
    if stored is None:
        raise NotFound(f"image {image_id} is not on this host")
    try:
        config = layout.blob(image_id).read_bytes()
    except OSError as exc:
        raise NotFound(f"image {image_id}: its config blob is missing from the store") from exc
    layers = []
    for diff_id in stored.record.layers:
        kept = kept_blob(layout.layer(diff_id))
        if kept is None:
            raise BadImage(
                f"image {image_id[:19]}: layer {diff_id[:19]} has no kept blob (the image came from an "
                "archive, or from before blobs were kept); pull or build it again to push it"
            )
        layers.append(kept)
    manifests = []
    for digest in stored.blobs:
        if digest == image_id:
            continue
        try:
            data = layout.blob(digest).read_bytes()
            if isinstance(json.loads(data), dict):
                manifests.append(data)
        except (OSError, ValueError):
            continue
    return PushSource(stored.record, config, layers, manifests)
