"""The image layer store of one host: verified blobs, unpacked layers shared between images, and records.

The controller keeps the image catalog (names, projects); this is the content on one host. Images come
in as ``docker save`` archives, OCI image layouts (archive or directory) or root filesystem tars, and
leave when the controller says so. Layers are unpacked once and shared by every image that uses them;
containers mount them read-only as overlayfs lowers (``layer_dirs()`` and ``overlay.py``).

**All or nothing.** An import either records every image of the archive, or fails with
:class:`BadImage` (or :class:`RuntimeFailure` for host trouble) leaving the store as it was: no partial
layer, no record, no temp file, no orphan blob. See ``importer.py``.

**Durable later.** An import returns once its records are written; the disk catches up in the
background, and containers, pushes and exports wait for it (``wait_durable``). Opening a store after
a crash discards what never reached the disk. See ``durable.py``.

**Images are untrusted.** Every blob is verified against the digest that names it, every layer against
its config's diff_id, and extraction can't write outside its layer (``extract.py``).

**Setuid policy.** Setuid and setgid bits in layers are kept: images legitimately ship ``su``, ``ping``
or ``passwd``, and inside a container they grant nothing, because containers run with
``no_new_privs``. On the host, though, an unpacked setuid-root file would be a gift to any local user
who could reach it. So the store root is mode 0700 (enforced each time a store opens, also on an
existing directory): no user but root can traverse into it, so no host user can execute what it holds.
Merged container root filesystems must likewise be mounted under a directory only root can traverse.

**Concurrency.** One ``ImageStore`` per root directory (opening one empties its tmp/). Imports run
their heavy work (hashing, decompression, extraction) in worker threads, so the event loop stays
responsive; any number may run at once. ``get``, ``list``, ``layer_dirs`` are cheap; ``remove`` and
``prune`` delete files and block: call them from a thread in async code. An import whose caller is
cancelled after the archive was received still runs to its end in its thread.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from atoll.agent.images.compression import SNIFF_BYTES, Compression, decompressed, sniff
from atoll.agent.images.durable import Durability, open_durability
from atoll.agent.images.exporter import export_images
from atoll.agent.images.formats import read_plans
from atoll.agent.images.history import image_history
from atoll.agent.images.importer import ImportJob
from atoll.agent.images.layout import Layout, remove_tree
from atoll.agent.images.ledger import Key, Ledger, blob_key, layer_key
from atoll.agent.images.ocilayout import host_architecture
from atoll.agent.images.records import StoredImage
from atoll.agent.images.remote import Fetch, InFlight, PushSource, Report, install_remote, push_source
from atoll.agent.images.sources import BlobSource, DirectorySource, TarArchive
from atoll.agent.images.streams import CHUNK, Prefixed, is_digest
from atoll.model.errors import BadImage, NotFound
from atoll.model.image import ImageConfig, ImageRecord
from atoll.model.imagehistory import HistoryEntry

log = logging.getLogger(__name__)

SPOOL_BATCH = 4 << 20
"""Incoming chunks are gathered to this size before one write in a worker thread."""

_HEX = re.compile(r"[0-9a-f]{64}")


class ImageStore:
    def __init__(self, root: Path) -> None:
        self._layout = Layout(root)
        self._layout.create()
        self._layout.clear_tmp()
        self._ledger = Ledger()
        self._inflight = InFlight()
        self._load()
        self._durability: Durability = open_durability(self._layout, self._ledger)

    @property
    def root(self) -> Path:
        return self._layout.root

    async def import_archive(self, chunks: AsyncIterator[bytes]) -> list[ImageRecord]:
        """Import a ``docker save`` or OCI image-layout tar (plain, gzip, bzip2, xz or zstd compressed).

        The stream is spooled to tmp/ first: both formats need random access to their members.
        Returned records carry the tags named in the archive.
        """
        scratch = self._layout.scratch("import-")
        spool = scratch / "archive"
        try:
            await _spool(chunks, spool)
        except BaseException:
            remove_tree(scratch)
            raise
        return self._sync_later(await asyncio.to_thread(self._import_spooled, scratch, spool))

    async def import_directory(self, path: Path) -> list[ImageRecord]:
        """Import an OCI image-layout directory, or an unpacked ``docker save`` directory."""
        return self._sync_later(await asyncio.to_thread(self._import_directory, path))

    async def build(
        self, rootfs_tar: AsyncIterator[bytes], config: ImageConfig, *, created: str | None = None
    ) -> ImageRecord:
        """A one-layer image from a root filesystem tar stream (plain or compressed).

        The config JSON is canonical (sorted keys, no spaces), so the same tar, config and ``created``
        always give the same image id. The record has no tags: the catalog names it.
        """
        scratch = self._layout.scratch("build-")
        spool = scratch / "rootfs"
        try:
            await _spool(rootfs_tar, spool)
        except BaseException:
            remove_tree(scratch)
            raise
        [record] = self._sync_later([await asyncio.to_thread(self._build, scratch, spool, config, created)])
        return record

    def scratch(self, prefix: str) -> Path:
        """A fresh directory under tmp/ (on the store's file system, emptied at the next start)."""
        return self._layout.scratch(prefix)

    def has_layer(self, diff_id: str) -> bool:
        return self._layout.layer(diff_id).is_dir()

    async def install_remote(
        self, scratch: Path, fetch: Fetch, report: Report, *, source: str, repo_tag: str = ""
    ) -> ImageRecord:
        """Install the image laid out in ``scratch`` (see ``remote.py``), fetching the layers it lacks.

        All or nothing, like an import; ``scratch`` is removed either way."""
        try:
            record = await install_remote(
                self._layout,
                self._ledger,
                self._durability,
                scratch,
                fetch,
                report,
                source=source,
                repo_tag=repo_tag,
                inflight=self._inflight,
            )
        finally:
            await asyncio.to_thread(remove_tree, scratch)
        [record] = self._sync_later([record])
        return record

    def _sync_later(self, records: builtins.list[ImageRecord]) -> builtins.list[ImageRecord]:
        """Start the sync of what an import recorded (``durable.py``), once its scratch is gone: the
        sync commits the file system's journal, which holds up a removal started meanwhile."""
        self._durability.submit((d for r in records for d in r.layers), records=True)
        return records

    def push_source(self, image_id: str) -> PushSource:
        """Config, kept layer blobs and stored manifests of an image, for a push.

        Blocks until the image's layers are on disk (see ``durable.py``): call it from a thread."""
        key = _digest(image_id)
        if key is None:
            raise NotFound(f"image {image_id!r} is not on this host")
        record = self.get(key)
        if record is not None:
            self._durability.wait(record.layers)
        return push_source(self._layout, self._ledger, key)

    def export(self, images: Mapping[str, builtins.list[str]]) -> AsyncIterator[bytes]:
        """A ``docker save`` stream of ``images`` (image id -> tags to give it); see ``exporter.py``.

        Unknown images fail here; the stream starts once the images' layers are on disk: a saved
        archive is a copy kept elsewhere."""
        stream = export_images(self._layout, self.get, images)
        layers = [d for r in (self.get(i) for i in images) if r is not None for d in r.layers]
        return self._after_durable(layers, stream)

    async def _after_durable(
        self, layers: Sequence[str], stream: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        await self.wait_durable(layers)
        async for chunk in stream:
            yield chunk

    def is_durable(self, diff_ids: Sequence[str]) -> bool:
        """Whether every one of these layers is known to be on disk (``durable.py``)."""
        return all(self._durability.is_durable(d) for d in diff_ids)

    async def wait_durable(self, diff_ids: Sequence[str]) -> None:
        """Return once these layers are on disk; RuntimeFailure if their sync failed. Layers that are
        not in the store are not waited for (their user reports them missing)."""
        if not self.is_durable(diff_ids):
            await asyncio.to_thread(self._durability.wait, list(diff_ids))

    async def settle(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until no layer sync is queued or running: an agent that stops
        in order lets its last pulls reach the disk, or the next start would discard them."""
        return await asyncio.to_thread(self._durability.settle, timeout)

    @property
    def durability(self) -> Durability:
        return self._durability

    def history(self, image_id: str) -> builtins.list[HistoryEntry]:
        """The image's history steps, oldest first, with the sizes of the layers they made."""
        record = self.get(image_id)
        if record is None:
            raise NotFound(f"image {image_id!r} is not on this host")
        return image_history(self._layout, record)

    def get(self, image_id: str) -> ImageRecord | None:
        """Look up by id ("sha256:<hex>", or the bare hex)."""
        key = _digest(image_id)
        with self._ledger.lock:
            stored = self._ledger.images.get(key) if key else None
        return stored.record if stored else None

    def list(self) -> builtins.list[ImageRecord]:
        with self._ledger.lock:
            return [self._ledger.images[k].record for k in sorted(self._ledger.images)]

    def remove(self, image_id: str, *, keep_layers: Collection[str] = ()) -> None:
        """Forget an image; delete its layers and blobs that no other image (or import) uses.

        ``keep_layers``: diff_ids to keep even if unused, e.g. layers mounted by running containers.
        Idempotent: removing an unknown image does nothing.
        """
        key = _digest(image_id)
        retired = []
        with self._ledger.lock:
            stored = self._ledger.images.get(key) if key else None
            if stored is None:
                return
            self._layout.image(stored.record.id).unlink(missing_ok=True)
            del self._ledger.images[stored.record.id]
            keep = self._keep(keep_layers)
            for diff_id in dict.fromkeys(stored.record.layers):
                if layer_key(diff_id) not in keep:
                    self._durability.forget(diff_id)
                    retired.append(self._layout.retire(self._layout.layer(diff_id)))
            for digest in stored.blobs:
                if blob_key(digest) not in keep:
                    self._layout.blob(digest).unlink(missing_ok=True)
        for path in retired:
            if path is not None:
                remove_tree(path)

    def prune(self, *, keep_layers: Collection[str] = ()) -> builtins.list[str]:
        """Delete every layer and blob no image uses (left by a crash, or kept by ``remove``).

        Returns the diff_ids of the layers deleted.
        """
        removed: builtins.list[str] = []
        retired = []
        with self._ledger.lock:
            keep = self._keep(keep_layers)
            for path in self._layout.layers.iterdir():
                diff_id = f"sha256:{path.name}"
                if layer_key(diff_id) not in keep:
                    self._durability.forget(diff_id)
                    retired.append(self._layout.retire(path))
                    removed.append(diff_id)
            for path in self._layout.blobs.iterdir():
                if blob_key(f"sha256:{path.name}") not in keep:
                    path.unlink(missing_ok=True)
        for retired_path in retired:
            if retired_path is not None:
                remove_tree(retired_path)
        return removed

    def layer_dirs(self, diff_ids: Sequence[str]) -> builtins.list[Path]:
        """The unpacked directories of ``diff_ids``, in the same order (bottom first)."""
        dirs = []
        for diff_id in diff_ids:
            key = _digest(diff_id)
            path = self._layout.layer(key) / "diff" if key else None
            if path is None or not path.is_dir():
                raise NotFound(f"layer {diff_id} is not in the image store")
            dirs.append(path)
        return dirs

    def _keep(self, keep_layers: Collection[str]) -> set[Key]:
        keep = self._ledger.referenced() | set(self._ledger.pins)
        keep.update(layer_key(d) for d in (_digest(x) for x in keep_layers) if d)
        return keep

    def _load(self) -> None:
        for path in sorted(self._layout.images.glob("*.json")):
            try:
                stored = StoredImage.from_json(json.loads(path.read_bytes()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("image store: ignoring unreadable record %s: %s", path, exc)
                continue
            if self._layout.image(stored.record.id) != path:
                log.warning("image store: ignoring %s: it holds image %s", path, stored.record.id)
                continue
            self._ledger.images[stored.record.id] = stored

    def _import_spooled(self, scratch: Path, spool: Path) -> builtins.list[ImageRecord]:
        try:
            return self._import(TarArchive(_plain_archive(spool, scratch), "archive"), scratch)
        finally:
            remove_tree(scratch)

    def _import_directory(self, path: Path) -> builtins.list[ImageRecord]:
        src = DirectorySource(path)
        scratch = self._layout.scratch("import-")
        try:
            return self._import(src, scratch)
        finally:
            remove_tree(scratch)

    def _import(self, src: BlobSource, scratch: Path) -> builtins.list[ImageRecord]:
        plans = read_plans(src)
        for plan in plans:  # fail fast, before unpacking anything, if a needed blob is absent
            for layer in plan.layers:
                if not self._layout.layer(layer.diff_id).exists() and not src.exists(layer.name):
                    raise BadImage(f"{src.label}: {layer.label}: missing blob {layer.name}")
        job = ImportJob(self._layout, self._ledger, self._durability, scratch)
        records, stored = [], []
        try:
            for plan in plans:
                blobs = [job.add_blob(b) for b in (plan.config_blob, *plan.extra_blobs.values())]
                sizes = [job.ensure_layer(src, layer, keep_blob=True) for layer in plan.layers]
                record = plan.record(list(plan.repo_tags), sum(sizes))
                records.append(record)
                stored.append(StoredImage(record, blobs))
            job.commit(stored)
        except BaseException:
            job.abort()
            raise
        return records

    def _build(self, scratch: Path, spool: Path, config: ImageConfig, created: str | None) -> ImageRecord:
        try:
            job = ImportJob(self._layout, self._ledger, self._durability, scratch)
            try:
                diff_id, size = job.add_rootfs(spool, "root filesystem tar", keep=True)
                when = created or datetime.now(UTC).isoformat().replace("+00:00", "Z")
                doc = {
                    "architecture": host_architecture(),
                    "os": "linux",
                    "created": when,
                    "config": config.to_oci(),
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                    "history": [{"created": when, "created_by": "atoll build"}],
                }
                config_digest = job.add_blob(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
                record = ImageRecord(
                    id=config_digest,
                    repo_tags=[],
                    layers=[diff_id],
                    size=size,
                    created=when,
                    architecture=host_architecture(),
                    os="linux",
                    config=config,
                )
                job.commit([StoredImage(record, [config_digest])])
            except BaseException:
                job.abort()
                raise
            return record
        finally:
            remove_tree(scratch)


def _digest(value: str) -> str | None:
    if is_digest(value):
        return value
    return f"sha256:{value}" if _HEX.fullmatch(value) else None


async def _spool(chunks: AsyncIterator[bytes], path: Path) -> None:
    with open(path, "wb") as f:
        batch: builtins.list[bytes] = []
        size = 0
        async for chunk in chunks:
            batch.append(chunk)
            size += len(chunk)
            if size >= SPOOL_BATCH:
                await asyncio.to_thread(_write_batch, f, batch)
                batch, size = [], 0
        if batch:
            await asyncio.to_thread(_write_batch, f, batch)


def _write_batch(f: BinaryIO, batch: builtins.list[bytes]) -> None:
    for chunk in batch:
        f.write(chunk)


def _plain_archive(spool: Path, scratch: Path) -> Path:
    """A compressed archive is decompressed once to disk, since reading members needs seeking."""
    with open(spool, "rb") as f:
        head = f.read(SNIFF_BYTES)
        kind = sniff(head)
        if kind is Compression.NONE:
            return spool
        plain = scratch / "archive.tar"
        with decompressed(Prefixed(head, f), kind, "archive") as stream, open(plain, "wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
    spool.unlink()
    return plain
