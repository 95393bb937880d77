"""The store's shared bookkeeping, under one lock: committed images and what in-flight imports hold.

Imports run in worker threads, ``remove()`` anywhere; they meet here. The lock is only held for
bookkeeping and renames, never while a layer is being unpacked.

- **Pins.** An import pins each layer and blob as soon as it finds or creates it, until it commits or
  fails, so a concurrent ``remove()`` can't delete what the import is about to reference.
- **Fresh.** Layers and blobs created by imports that haven't committed yet. When an import fails, what
  is fresh, unpinned and unreferenced goes: the last import holding it cleans up, even if another
  import made it. Nothing else is ever deleted on failure, so layers that existed before stay.
"""

from __future__ import annotations

import threading
from collections import Counter

from atoll.agent.images.records import StoredImage

Key = tuple[str, str]
"""("layer", diff_id) or ("blob", digest)."""


def layer_key(diff_id: str) -> Key:
    return ("layer", diff_id)


def blob_key(digest: str) -> Key:
    return ("blob", digest)


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.images: dict[str, StoredImage] = {}
        self.pins: Counter[Key] = Counter()
        self.fresh: set[Key] = set()

    def referenced(self, *, excluding: str = "") -> set[Key]:
        """Layers and blobs used by committed images other than ``excluding``. Caller holds the lock."""
        refs: set[Key] = set()
        for image_id, stored in self.images.items():
            if image_id != excluding:
                refs.update(layer_key(d) for d in stored.record.layers)
                refs.update(blob_key(d) for d in stored.blobs)
        return refs

    def unpin(self, keys: list[Key]) -> None:
        for key in keys:
            self.pins[key] -= 1
            if self.pins[key] <= 0:
                del self.pins[key]
