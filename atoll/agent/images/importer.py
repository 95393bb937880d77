"""One import (or build) as a transaction over the store: everything it adds, or nothing.

Layers are unpacked into the job's scratch directory under tmp/ and renamed into layers/ when complete
and verified. If the target appeared meanwhile (a concurrent import of the same layer won the race),
ours is discarded with the scratch directory. Image records are written last, all together; until then
no image refers to what the job made, and a failure retires exactly what is fresh (see ledger.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from atoll.agent.images.blobs import MEDIA_TYPES, blob_meta, blob_meta_for_file
from atoll.agent.images.durable import Durability
from atoll.agent.images.layers import unpack_and_keep, unpack_blob, unpack_rootfs
from atoll.agent.images.layout import Layout, remove_tree, write_bytes, write_json
from atoll.agent.images.ledger import Key, Ledger, blob_key, layer_key
from atoll.agent.images.plan import LayerPlan
from atoll.agent.images.records import StoredImage
from atoll.agent.images.sources import BlobSource
from atoll.agent.images.streams import sha256_digest


class ImportJob:
    def __init__(self, layout: Layout, ledger: Ledger, durability: Durability, scratch: Path) -> None:
        self._layout = layout
        self._ledger = ledger
        self._durability = durability
        self._scratch = scratch
        self._pinned: list[Key] = []
        self._released = False
        self._work = 0

    def add_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        path = self._layout.blob(digest)
        with self._ledger.lock:
            if not path.exists():
                write_bytes(path, data, self._scratch)  # small (a config or manifest): fine under the lock
                self._ledger.fresh.add(blob_key(digest))
            self._pin(blob_key(digest))
        return digest

    def ensure_layer(self, src: BlobSource, plan: LayerPlan, *, keep_blob: bool = False) -> int:
        """Make sure layer ``plan.diff_id`` is in the store; returns its size.

        ``keep_blob``: keep a copy of the blob beside the layer (``blobs.py``), so the image can be
        pushed and copied to other hosts as it came."""
        size = self.pin_existing(plan.diff_id)
        if size is not None:
            return size
        work = self.new_work()
        if not keep_blob:
            return self.install(work, plan.diff_id, unpack_blob(src, plan, work / "diff"))
        size, digest, kind = unpack_and_keep(src, plan, work / "diff", work / "blob")
        media_type = MEDIA_TYPES.get(kind)
        if media_type is None:  # bzip2 or xz: no layer media type says that; keep nothing
            os.unlink(work / "blob")
            return self.install(work, plan.diff_id, size)
        blob_size = os.stat(work / "blob").st_size
        return self.install(work, plan.diff_id, size, blob_meta(digest, blob_size, media_type, []))

    def pin_existing(self, diff_id: str) -> int | None:
        """If layer ``diff_id`` is already stored, hold it for this job and return its size."""
        target = self._layout.layer(diff_id)
        with self._ledger.lock:
            if target.exists():
                self._pin(layer_key(diff_id))
                return layer_size(target)
        return None

    def add_rootfs(self, tar: Path, label: str, *, keep: bool = False) -> tuple[str, int]:
        work = self.new_work()
        diff_id, size = unpack_rootfs(tar, work / "diff", label)
        meta = None
        if keep:
            meta = blob_meta_for_file(tar, diff_id)
            if meta is not None:
                os.rename(tar, work / "blob")
        return diff_id, self.install(work, diff_id, size, meta)

    def commit(self, images: list[StoredImage]) -> list[StoredImage]:
        """Record ``images``; an image already stored keeps its tags and gains the new ones.

        Returns before the layers are on disk: the store starts their sync when the import has
        cleaned up, and whatever depends on them waits for it (``durable.py``). A crash before it
        ends discards these images when the store opens again."""
        with self._ledger.lock:
            final = []
            for stored in images:
                old = self._ledger.images.get(stored.record.id)
                if old is not None:
                    tags = _union(old.record.repo_tags, stored.record.repo_tags)
                    blobs = _union(old.blobs, stored.blobs)
                    stored = StoredImage(replace(stored.record, repo_tags=tags), blobs)
                final.append(stored)
            staged: list[tuple[Path, Path]] = []
            for stored in final:  # write them all first: a failure here leaves no record behind
                tmp = self._scratch / f"record-{len(staged)}.json"
                # A new record is not fsynced: the layers' sync writes it too, and if the host stops
                # before, an empty or missing record is as good as the unmarked layers' verdict. One
                # that replaces a record (new tags on a stored image) must not come back empty.
                replaces = stored.record.id in self._ledger.images
                write_json(tmp, stored.to_json(), self._scratch, durable=replaces)
                staged.append((tmp, self._layout.image(stored.record.id)))
            for tmp, path in staged:
                os.rename(tmp, path)
            for stored in final:
                self._ledger.images[stored.record.id] = stored
                self._ledger.fresh.difference_update(layer_key(d) for d in stored.record.layers)
                self._ledger.fresh.difference_update(blob_key(d) for d in stored.blobs)
            self._release()
        return final

    def abort(self) -> None:
        """Undo: retire what this job holds that is fresh and that nobody else holds or uses."""
        retired = []
        with self._ledger.lock:
            self._release()
            refs = self._ledger.referenced()
            for key in dict.fromkeys(self._pinned):
                if key not in self._ledger.fresh or key in refs or self._ledger.pins[key] > 0:
                    continue
                self._ledger.fresh.discard(key)
                kind, digest = key
                if kind == "blob":
                    self._layout.blob(digest).unlink(missing_ok=True)
                else:
                    self._durability.forget(digest)
                    retired.append(self._layout.retire(self._layout.layer(digest)))
        for path in retired:
            if path is not None:
                remove_tree(path)

    def install(self, work: Path, diff_id: str, size: int, meta: dict[str, Any] | None = None) -> int:
        # Not synced here (see write_bytes): after commit() the layer's sync (durable.py) covers it, and
        # a layer without its durable mark is discarded when the store opens after a crash.
        doc = {"diff_id": diff_id, "size": size, **(meta or {})}
        write_json(work / "layer.json", doc, self._scratch, durable=False)
        target = self._layout.layer(diff_id)
        with self._ledger.lock:
            if target.exists():  # another import finished it first; ours goes with the scratch dir
                self._pin(layer_key(diff_id))
                return layer_size(target)
            os.rename(work, target)
            self._ledger.fresh.add(layer_key(diff_id))
            self._pin(layer_key(diff_id))
        return size

    def new_work(self) -> Path:
        with self._ledger.lock:  # jobs may unpack several layers at once, each in its own thread
            self._work += 1
            work = self._scratch / f"layer-{self._work}"
        (work / "diff").mkdir(parents=True)
        return work

    def _pin(self, key: Key) -> None:
        self._ledger.pins[key] += 1
        self._pinned.append(key)

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._ledger.unpin(self._pinned)


def _union(old: list[str], new: list[str]) -> list[str]:
    return old + [x for x in new if x not in old]


def layer_size(layer: Path) -> int:
    try:
        with open(layer / "layer.json", "rb") as f:
            size = json.load(f)["size"]
        if isinstance(size, int):
            return size
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return _measure(layer / "diff")


def _measure(tree: Path) -> int:
    """Docker's rule when the stored size is lost: regular files' bytes, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, files in os.walk(tree):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen and (st.st_mode & 0o170000) == 0o100000:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
