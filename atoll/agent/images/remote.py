"""Installing an image whose blobs arrive over the network, and reading one back out for a push.

A pull first lays the image's small documents (manifests, config) out in a scratch directory as an OCI
image layout, so the same code that validates imported layouts (``ocilayout.py``, ``plan.py``) checks
them. Layers the store already holds are pinned and never fetched; a layer another pull is fetching
right now is waited for (``InFlight``). The others are fetched concurrently by the caller's ``fetch``,
each unpacked by a worker (a process, or a thread) WHILE it downloads (the blob stream is teed into
the kept blob file, its hash, and a streaming decompress + untar into the layer's work directory,
``Sink``). The layer is renamed into the store only after the whole blob matched its digest and the
tar its diff_id; a mismatch leaves nothing but scratch. The compressed blob is kept beside the layer
(``blobs.py``). It is one ``ImportJob``: the image record is written only once every layer is in, and
any failure (or cancellation) undoes what this pull made, after the fetches' workers have stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atoll.agent.images.blobs import MEDIA_TYPES, KeptBlob, blob_meta, kept_blob
from atoll.agent.images.compression import Compression
from atoll.agent.images.durable import Durability
from atoll.agent.images.formats import read_plans
from atoll.agent.images.importer import ImportJob
from atoll.agent.images.layers import unpack_stream
from atoll.agent.images.layout import Layout
from atoll.agent.images.ledger import Ledger
from atoll.agent.images.plan import ImagePlan, LayerPlan
from atoll.agent.images.records import StoredImage
from atoll.agent.images.sources import DirectorySource
from atoll.agent.images.streams import Reader
from atoll.model.errors import BadImage, NotFound
from atoll.model.image import ImageRecord


@dataclass(frozen=True)
class Sink:
    """Where one fetched layer goes: its kept blob file, the empty directory to unpack it into, and
    the step that installs it once unpacked and verified (``install(size)`` returns the layer's size).

    A fetch either hands the blob's bytes to :meth:`consume` as they arrive, or unpacks them itself
    (``unpack_stream`` into ``diff``, in another process) and then calls ``install``."""

    plan: LayerPlan
    blob: Path
    diff: Path
    install: Callable[[int], int]

    def consume(self, blob: Reader) -> int:
        """Unpack and install the layer from ``blob``: a reader whose last read raises BadImage unless
        the bytes match ``plan.digest`` and ``plan.size``."""
        return self.install(unpack_stream(blob, self.plan, self.diff))


Fetch = Callable[[Sink], Awaitable[int]]
"""Download the blob of ``sink.plan`` into ``sink.blob`` and unpack and install it (see Sink) on a
worker thread or process. Returns what ``install`` returned. It must not return or raise before that
worker is done, even when cancelled: the job's undo must not race an unpack."""
Report = Callable[[LayerPlan, str], None]
"""Told about each layer's steps: "Already exists", "Waiting", "Extracting", "Pull complete"."""


@dataclass(frozen=True)
class PushSource:
    """What a push needs of a stored image: its config, its layers' kept blobs, and known manifests."""

    record: ImageRecord
    config: bytes
    layers: list[KeptBlob]
    manifests: list[bytes]


class InFlight:
    """Layers being fetched right now by some pull of this store, by diff_id (event-loop only).

    A pull that needs a layer another pull (of another image) is fetching waits for that one and uses
    its result, so concurrent pulls of images sharing a base layer download it once."""

    def __init__(self) -> None:
        self._fetching: dict[str, asyncio.Future[None]] = {}

    def get(self, diff_id: str) -> asyncio.Future[None] | None:
        return self._fetching.get(diff_id)

    @contextmanager
    def claim(self, diff_id: str) -> Iterator[None]:
        done = asyncio.get_running_loop().create_future()
        self._fetching[diff_id] = done
        try:
            yield
        finally:
            del self._fetching[diff_id]
            done.set_result(None)


async def install_remote(
    layout: Layout,
    ledger: Ledger,
    durability: Durability,
    scratch: Path,
    fetch: Fetch,
    report: Report,
    *,
    source: str,
    repo_tag: str,
    inflight: InFlight,
) -> ImageRecord:
    """Install the one image laid out in ``scratch`` (index.json and its small blobs already there)."""
    src = DirectorySource(scratch)
    plans = await asyncio.to_thread(read_plans, src)
    if len(plans) != 1:
        raise BadImage(f"{source}: expected one image, found {len(plans)}")
    plan = plans[0]
    job = ImportJob(layout, ledger, durability, scratch)
    small = (plan.config_blob, *plan.extra_blobs.values())
    # The config and manifests are stored (each fsynced) on a thread while the layers download: on
    # the event loop, under load, the fsyncs held up the start of every layer's download.
    adding = asyncio.ensure_future(asyncio.to_thread(lambda: [job.add_blob(b) for b in small]))
    try:
        sizes = await _layers(job, plan, fetch, report, source, inflight)
        blobs = await asyncio.shield(adding)
        record = plan.record([repo_tag] if repo_tag else [], sum(sizes))
        await asyncio.to_thread(job.commit, [StoredImage(record, blobs)])
    except BaseException:
        await asyncio.gather(adding, return_exceptions=True)  # its pins are undone with the rest
        job.abort()
        raise
    return record


async def _layers(
    job: ImportJob, plan: ImagePlan, fetch: Fetch, report: Report, source: str, inflight: InFlight
) -> list[int]:
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
        while (other := inflight.get(layer.diff_id)) is not None:
            report(layer, "Waiting")
            await asyncio.wait([other])  # it may fail: then we fetch it ourselves below
            size = job.pin_existing(layer.diff_id)
            if size is not None:
                sizes[layer.diff_id] = size
                report(layer, "Already exists")
                return
        media_type = MEDIA_TYPES.get(layer.compression or Compression.NONE, MEDIA_TYPES[Compression.NONE])
        meta = blob_meta(layer.digest, layer.size, media_type, [source])
        work = job.new_work()

        def install(size: int) -> int:  # only once the blob's digest and the diff_id matched
            return job.install(work, layer.diff_id, size, meta)

        with inflight.claim(layer.diff_id):
            sizes[layer.diff_id] = await fetch(Sink(layer, work / "blob", work / "diff", install))
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
