"""Pulling images from registries into the host's layer store.

1. Resolve: the manifest for the reference, from the registry's mirrors in order, then from the registry
   itself (a mirror that is down or lacks the image is skipped). An index or manifest list is narrowed
   to the host's platform. Manifests are capped at 4 MiB and checked against the digest that names them.
2. Share: pulls resolving to the same image manifest while one is in flight join it (``events.py``).
3. Fetch: the config, then the missing layers in parallel, each in a worker process that reads it off
   the socket (``blobstream.py``: resumed or retried on a broken transfer, verified) and unpacks it as it
   arrives (``layerproc.py``, driven by a thread here: ``layerpool.py``); the layer is installed here
   once it is verified (``images/remote.py``), after its download slot went to the next layer. With
   ``worker_processes`` off, the thread does it all.
   Everything lands in the store all together, or nothing does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import threading
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from atoll.agent.images.ocilayout import (
    CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    NAME_FULL,
    parse_descriptor,
    pick_platform,
)
from atoll.agent.images.plan import LayerPlan, load_json, want_dict
from atoll.agent.images.remote import Sink
from atoll.agent.images.store import ImageStore
from atoll.agent.registry.auth import pull_scope
from atoll.agent.registry.client import RegistryClient, connect
from atoll.agent.registry.events import Broadcast
from atoll.agent.registry.layerpool import LayerWorkers
from atoll.agent.registry.options import RegistryOptions
from atoll.model.errors import AtollError, BadImage, NotFound, RegistryAuthError, RegistryError
from atoll.model.reference import ImageReference
from atoll.model.registry import Credential, Pulled, PullEvent, TransferEvent


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class Puller:
    def __init__(self, store: ImageStore, options: RegistryOptions) -> None:
        self._store = store
        self._options = options
        self._jobs: dict[str, Broadcast[Pulled]] = {}
        self._slots = asyncio.Semaphore(options.parallel_downloads)
        # Layer downloads (and their unpacking) run on threads of their own: on the default executor
        # they could take every thread while waiting for the event loop, which may need one (DNS).
        self._pool = ThreadPoolExecutor(options.parallel_downloads, thread_name_prefix="pull")
        # Started on first use (or by ready()) and kept: an agent that never pulls starts none.
        self._workers = LayerWorkers(options.parallel_downloads) if options.worker_processes else None

    async def ready(self) -> None:
        """Start the layer worker processes now, rather than on the first pull, and wait for them."""
        if self._workers is not None:
            await asyncio.to_thread(self._workers.start)

    def worker_pids(self) -> list[int]:
        """The layer worker processes alive in the pool now (for tests and benchmarks)."""
        return self._workers.pids() if self._workers is not None else []

    async def close(self) -> None:
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.shutdown(wait=False)
        if self._workers is not None:
            await asyncio.to_thread(self._workers.close)

    async def pull(
        self, ref: ImageReference, credentials: Mapping[str, Credential]
    ) -> AsyncIterator[PullEvent]:
        client, top_data, top_type, top_digest = await self._resolve(ref, credentials)
        try:
            yield TransferEvent(f"Resolved {ref} to {top_digest}")
            data, media_type, digest = await self._platform(client, ref, top_data, top_type)
        except BaseException:
            await client.aclose()
            raise
        key = digest
        job = self._jobs.get(key)
        if job is None:
            job = Broadcast[Pulled]()
            self._jobs[key] = job
            top = (top_data, top_digest, top_type)
            task = job.start(lambda b: self._fetch(b, client, ref, top, (data, digest, media_type)))
            task.add_done_callback(lambda _: self._jobs.pop(key, None))
        else:
            await client.aclose()
            yield TransferEvent(f"Waiting for a pull of the same image already under way ({short(key)})")
        async for event in job.follow():
            yield event

    async def _resolve(
        self, ref: ImageReference, credentials: Mapping[str, Credential]
    ) -> tuple[RegistryClient, bytes, str, str]:
        """The first endpoint (mirrors, then the registry) that has the manifest, and that manifest."""
        endpoints = [(m, _host_of(m)) for m in self._options.mirrors_of(ref.domain)]
        endpoints.append((f"https://{ref.api_host}", ref.api_host))
        failures: list[AtollError] = []
        for base, host in endpoints:
            client: RegistryClient | None = None
            try:
                client = await connect(base, host, self._options, credentials.get(host))
                data, media_type, digest = await client.get_manifest(
                    ref.path, ref.reference, [pull_scope(ref.path)]
                )
                return client, data, _type_of(data, media_type), digest
            except (NotFound, RegistryError) as exc:
                if client is not None:
                    await client.aclose()
                failures.append(exc)
            except BaseException:
                if client is not None:
                    await client.aclose()
                raise
        raise _best(failures, ref)

    async def _platform(
        self, client: RegistryClient, ref: ImageReference, data: bytes, media_type: str
    ) -> tuple[bytes, str, str]:
        """The image manifest for this host: ``data`` itself, or the entry of an index picked for it."""
        where = f"{client.host}/{ref.path}@{ref.reference}"
        if media_type in MANIFEST_TYPES:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            return data, media_type, digest
        if media_type not in INDEX_TYPES:
            raise BadImage(f"{where}: unsupported manifest media type {media_type or '(none)'}")
        doc = want_dict(load_json(data, where), where)
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise BadImage(f"{where}: manifests must be a list")
        descs = [parse_descriptor(e, f"{where} manifests[{i}]") for i, e in enumerate(entries)]
        child = pick_platform(descs, where)
        if child.media_type in INDEX_TYPES:
            raise BadImage(f"{where}: nested indexes are not supported for pulls")
        child_data, child_type, child_digest = await client.get_manifest(
            ref.path, child.digest, [pull_scope(ref.path)]
        )
        child_type = _type_of(child_data, child_type)
        if child_type not in MANIFEST_TYPES:
            raise BadImage(
                f"{where}: {child.digest}: unsupported manifest media type {child_type or '(none)'}"
            )
        return child_data, child_type, child_digest

    async def _fetch(
        self,
        events: Broadcast[Pulled],
        client: RegistryClient,
        ref: ImageReference,
        top: tuple[bytes, str, str],
        image: tuple[bytes, str, str],
    ) -> Pulled:
        try:
            return await self._fetch_with(events, client, ref, top, image)
        finally:
            await client.aclose()

    async def _fetch_with(
        self,
        events: Broadcast[Pulled],
        client: RegistryClient,
        ref: ImageReference,
        top: tuple[bytes, str, str],
        image: tuple[bytes, str, str],
    ) -> Pulled:
        top_data, top_digest, top_type = top
        data, digest, _ = image
        scopes = [pull_scope(ref.path)]
        doc = want_dict(load_json(data, digest), digest)
        config = parse_descriptor(doc.get("config"), f"{digest}: config")
        if config.media_type not in CONFIG_TYPES:
            raise BadImage(f"{ref}: unsupported config media type {config.media_type or '(none)'}")
        config_blob = await client.get_small_blob(ref.path, config.digest, scopes)
        scratch = self._store.scratch("pull-")
        try:
            await asyncio.to_thread(
                _layout, scratch, ref, (top_data, top_digest, top_type), [data, config_blob]
            )
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
            raise

        loop = asyncio.get_running_loop()

        async def fetch(sink: Sink) -> int:
            layer = sink.plan
            assert layer.digest is not None and layer.size is not None
            ident, total = short(layer.digest), layer.size
            stop = threading.Event()

            def progress(n: int) -> None:  # on the worker thread, which unpacks as it downloads
                loop.call_soon_threadsafe(events.publish, TransferEvent("Downloading", ident, n, total))
                if n == total:  # what is left is the end of the unpacking, then the digest checks
                    loop.call_soon_threadsafe(
                        events.publish, TransferEvent("Download complete", ident, n, total)
                    )
                    loop.call_soon_threadsafe(events.publish, TransferEvent("Extracting", ident, n, total))

            def work() -> int:
                assert layer.digest is not None and layer.size is not None
                if self._workers is not None:  # the install follows, once the slot is free again
                    return client.pull_layer(
                        self._workers, ref.path, sink, scopes, progress=progress, stop=stop, loop=loop
                    )
                stream = client.blob_stream(
                    ref.path,
                    layer.digest,
                    layer.size,
                    sink.blob,
                    scopes,
                    progress=progress,
                    stop=stop,
                    loop=loop,
                )
                try:
                    return sink.consume(stream)
                finally:
                    stream.close()

            async with self._slots:
                events.publish(TransferEvent("Downloading", ident, 0, total))
                size = await _finish_even_if_cancelled(loop.run_in_executor(self._pool, work), stop)
            if self._workers is None:
                return size
            # Installing (a rename, and layer.json) is not downloading: the next layer's download
            # starts now rather than after it, and it waits for no slot. Measured under load, the slot
            # stayed idle 0.05-0.2 s per layer while layer.json was fsynced (no longer: see importer).
            installing = asyncio.ensure_future(asyncio.to_thread(sink.install, size))
            return await _finish_even_if_cancelled(installing, stop)

        def report(layer: LayerPlan, status: str) -> None:
            events.publish(TransferEvent(status, short(layer.digest or layer.diff_id)))

        tag = "" if ref.digest else str(ref)
        record = await self._store.install_remote(
            scratch, fetch, report, source=f"{client.host}/{ref.path}", repo_tag=tag
        )
        return Pulled(record, top_digest)


async def _finish_even_if_cancelled(running: asyncio.Future[int], stop: threading.Event) -> int:
    """The result of a layer's thread; if we are cancelled meanwhile, tell it to stop (``stop``) and
    wait for it all the same before raising: the pull's undo must not race its unpack or install."""
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        stop.set()  # the thread stops at its next read
        await asyncio.gather(running, return_exceptions=True)
        raise


def _type_of(data: bytes, header: str) -> str:
    """The media type a manifest declares, else the one its Content-Type gave."""
    try:
        doc = json.loads(data)
    except ValueError:
        return header
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    if header in MANIFEST_TYPES | INDEX_TYPES:
        return header
    if isinstance(doc, dict) and "manifests" in doc:
        return "application/vnd.oci.image.index.v1+json"
    if isinstance(doc, dict) and "config" in doc:
        return "application/vnd.oci.image.manifest.v1+json"
    return header


def _layout(scratch: Path, ref: ImageReference, top: tuple[bytes, str, str], blobs: list[bytes]) -> None:
    """An OCI layout holding the image's manifests and config; the layers are fetched into it later."""
    data, digest, media_type = top
    root = scratch / "blobs" / "sha256"
    root.mkdir(parents=True)
    for blob in (data, *blobs):
        (root / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    (scratch / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entry = {
        "mediaType": media_type,
        "digest": digest,
        "size": len(data),
        "annotations": {NAME_FULL: str(ref)},
    }
    (scratch / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


def _host_of(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


def _best(failures: list[AtollError], ref: ImageReference) -> AtollError:
    """The error that says most: the registry's answer beats a mirror's, an answer beats silence."""
    upstream = failures[-1]
    if isinstance(upstream, NotFound | RegistryAuthError) or len(failures) == 1:
        return upstream
    answered = [f for f in failures if isinstance(f, NotFound | RegistryAuthError)]
    if answered:
        return answered[0]
    return RegistryError("; ".join(f.message for f in failures))
