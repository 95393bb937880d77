"""Layers reach the disk after the import returns; nothing depends on one before it has.

An import used to ``syncfs`` the store before writing its image records: a pull of ~420 MB (kept blobs
plus unpacked files) then waited ~0.35 s for the disk after all its work was done. Now it writes its
records at once and hands its layers to :class:`Durability`, whose thread runs one ``syncfs`` for every
layer handed in since the last one (concurrent imports share it) and then marks each layer durable.

**The mark is a file**, ``layers/<hex>/durable``, created only after a ``syncfs`` that started after the
layer was complete, and itself persisted by a second ``syncfs`` before anyone is told. So after a crash
a layer that has the mark has its data; one without it may not, and the store discards it on opening
(see ``store.py``), with every image record that names it: the user pulls again, and nothing half
present is ever used. Absence is the "not yet durable" state, so that state needs no write at all.

**What waits.** Whatever makes the data depended upon waits for the mark first: creating or starting a
container (its root overlays the layers), a push, a save or export. By then the sync is usually done
or running. Removing an image, pruning and listing never wait.

**Races.** A layer removed while its sync runs is forgotten (``forget``) and not marked; if the same
layer is installed again meanwhile, it waits for the next sync. Lock order: the store's ledger lock,
then this one; the thread never takes the ledger lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from atoll.agent.images.layout import Layout, remove_tree, write_bytes
from atoll.agent.images.ledger import Ledger, blob_key
from atoll.agent.images.records import StoredImage
from atoll.agent.images.syncfs import syncfs
from atoll.model.errors import RuntimeFailure

log = logging.getLogger(__name__)

MARK = "durable"
"""The file in a layer's directory that says its data is on disk."""

WAIT_SECONDS = 600.0
"""How long something that needs a layer waits for its sync before giving up (a hung disk)."""


class Durability:
    def __init__(self, layout: Layout, durable: Iterable[str]) -> None:
        self._layout = layout
        self._cond = threading.Condition()
        self._durable: set[str] = set(durable)
        self._queued: set[str] = set()
        self._syncing: set[str] = set()
        self._failed: dict[str, str] = {}
        self._records = False
        """Records were written since the last sync began (see ``submit``)."""
        self._busy = False
        """A sync is under way (possibly for records alone, with no layer in ``_syncing``)."""
        self._thread: threading.Thread | None = None
        self.sync: Callable[[Path], None] = syncfs
        """The flush; tests replace it to hold a sync back or to simulate a crash before it ends."""

    def is_durable(self, diff_id: str) -> bool:
        with self._cond:
            return diff_id in self._durable

    def submit(self, diff_ids: Iterable[str], *, records: bool = False) -> None:
        """Have these layers (complete, in layers/) made durable soon; returns at once. ``records``:
        image records were written too, which a sync must cover even if every layer was durable
        already (a pull of a new tag of layers held here), or a crash in the next half minute of
        writeback could lose them."""
        with self._cond:
            new = {d for d in diff_ids if d not in self._durable and d not in self._syncing}
            if not new and not records:
                return
            self._queued |= new
            self._records = self._records or records
            for d in new:
                self._failed.pop(d, None)
            self._cond.notify_all()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="image-durability", daemon=True)
                self._thread.start()

    def forget(self, diff_id: str) -> None:
        """The layer is being removed: it is no longer durable, and a sync under way must not mark it."""
        with self._cond:
            self._durable.discard(diff_id)
            self._queued.discard(diff_id)
            self._syncing.discard(diff_id)
            self._failed.pop(diff_id, None)
            self._cond.notify_all()

    def wait(self, diff_ids: Iterable[str], timeout: float = WAIT_SECONDS) -> None:
        """Block until every layer is durable. RuntimeFailure if a sync failed or it takes too long.
        A layer not submitted yet is submitted now (an import that has not started its sync yet);
        one that is not in the store is not waited for: its user fails on its own."""
        wanted = set(diff_ids)
        with self._cond:
            pending = self._queued | self._syncing
            unsubmitted = [d for d in wanted if d not in self._durable and d not in pending]
        self.submit(d for d in unsubmitted if self._layout.layer(d).is_dir())
        with self._cond:
            done = self._cond.wait_for(lambda: self._settled(wanted), timeout)
            failed = sorted(self._failed[d] for d in wanted if d in self._failed)
        if failed:
            raise RuntimeFailure(f"image layer data could not be written to disk: {failed[0]}")
        if not done:
            raise RuntimeFailure(f"image layer data not on disk after {timeout:.0f} s")

    def settle(self, timeout: float = WAIT_SECONDS) -> bool:
        """Wait until no sync is queued or running; False on timeout. For tests and benchmarks."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._queued or self._records or self._busy), timeout)

    def _settled(self, wanted: set[str]) -> bool:
        pending = self._queued | self._syncing
        return all(d in self._durable or d in self._failed or d not in pending for d in wanted)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queued and not self._records:  # idle: the thread ends (a store per test
                    self._thread = None  # must not keep one each)
                    return
                self._syncing, self._queued, self._records = self._queued, set(), False
                self._busy = True
            error = ""
            try:
                self.sync(self._layout.root)  # every layer in _syncing was complete before this began
                with self._cond:  # under the lock: a layer forgotten (and maybe installed anew) is skipped
                    marked = [d for d in self._syncing if _mark(self._layout.layer(d))]
                if marked:
                    self.sync(self._layout.root)  # the marks themselves, before anyone relies on them
            except Exception as exc:  # EIO from the disk, or a test's simulated crash
                log.error("image store: sync of %d layers failed: %s", len(self._syncing), exc)
                error = str(exc) or type(exc).__name__
                marked = []
            with self._cond:
                for d in self._syncing:
                    if error:
                        self._failed[d] = error
                    elif d in marked:
                        self._durable.add(d)
                self._syncing, self._busy = set(), False
                self._cond.notify_all()


def _mark(layer: Path) -> bool:
    """Create the layer's durable mark; False if the layer is gone (removed while it was synced)."""
    try:
        fd = os.open(layer / MARK, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


def has_mark(layer: Path) -> bool:
    return (layer / MARK).exists()


ADOPTED = "durable-marks"
"""A file in the store root: this store marks its layers. A store made before the marks existed
synced every layer before writing the record naming it, so on first opening its layers are marked."""


def open_durability(layout: Layout, ledger: Ledger) -> Durability:
    """Recover from a crash and return the store's durability keeper. Called as the store opens,
    after its records are loaded into ``ledger`` and before any import can start.

    Every record naming a layer without the mark (or a config or manifest blob that isn't there) is
    discarded with the record, then every unmarked layer, then the discarded records' blobs that no
    kept image uses. An empty record file is what a crash leaves of a record never synced: removed."""
    if not (layout.root / ADOPTED).exists():
        _adopt(layout)
    durable = {f"sha256:{p.name}" for p in layout.layers.iterdir() if has_mark(p)}
    dropped: list[StoredImage] = []
    for image_id, stored in list(ledger.images.items()):
        lost = [d for d in stored.record.layers if d not in durable]
        lost += [b for b in stored.blobs if not layout.blob(b).exists()]
        if lost:
            log.warning(
                "image store: discarding image %s: %s was not on disk when the host stopped; pull it again",
                image_id[:19],
                lost[0][:19],
            )
            layout.image(image_id).unlink(missing_ok=True)
            del ledger.images[image_id]
            dropped.append(stored)
    for path in layout.images.glob("*.json"):
        if path.stat().st_size == 0:
            path.unlink(missing_ok=True)
    for path in list(layout.layers.iterdir()):
        if not has_mark(path):
            log.warning("image store: discarding layer %s: not on disk when the host stopped", path.name[:12])
            retired = layout.retire(path)
            if retired is not None:
                remove_tree(retired)
    refs = ledger.referenced()
    for stored in dropped:
        for digest in stored.blobs:
            if blob_key(digest) not in refs:
                layout.blob(digest).unlink(missing_ok=True)
    return Durability(layout, durable)


def _adopt(layout: Layout) -> None:
    layers = list(layout.layers.iterdir())
    for path in layers:
        _mark(path)
    if layers:
        syncfs(layout.root)  # the marks before the flag that makes them count
    write_bytes(layout.root / ADOPTED, b"1\n", layout.tmp)
    fd = os.open(layout.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
