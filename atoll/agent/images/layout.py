"""The store's directory tree, and the few file operations that keep it consistent across crashes.

::

    root/                       mode 0700 (see store.py: the setuid policy)
      blobs/sha256/<hex>        configs and manifests, named by their digest
      layers/<hex>/diff/        an unpacked layer (an overlayfs lower), <hex> = its diff_id
      layers/<hex>/layer.json   {"diff_id", "size"}
      layers/<hex>/durable      empty; the layer's data is on disk (durable.py)
      images/<hex>.json         one image, <hex> = its id (the config digest)
      tmp/                      work in progress; emptied when a store opens

Everything appears by ``rename(2)`` from tmp/ (on the same file system), so a directory or file under
blobs/, layers/ or images/ is complete or absent. Things disappear the same way: renamed into tmp/
first, then deleted, so a crash in the middle leaves only litter in tmp/.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from atoll.agent.images.streams import digest_hex


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.layers = root / "layers"
        self.images = root / "images"
        self.tmp = root / "tmp"

    def create(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # also when it existed: the policy holds for every store we open
        for path in (self.blobs.parent, self.blobs, self.layers, self.images, self.tmp):
            path.mkdir(mode=0o700, exist_ok=True)

    def clear_tmp(self) -> None:
        for child in self.tmp.iterdir():
            remove_tree(child)

    def blob(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def layer(self, diff_id: str) -> Path:
        return self.layers / digest_hex(diff_id)

    def image(self, image_id: str) -> Path:
        return self.images / f"{digest_hex(image_id)}.json"

    def scratch(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp))

    def retire(self, path: Path) -> Path | None:
        """Move ``path`` into tmp/ (atomically out of sight); the caller deletes it at leisure."""
        dest = Path(tempfile.mkdtemp(prefix="retired-", dir=self.tmp))
        try:
            os.rename(path, dest / "x")
        except FileNotFoundError:
            os.rmdir(dest)
            return None
        return dest


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_json(path: Path, doc: Any, scratch: Path, *, durable: bool = True) -> None:
    """Write atomically and durably: a reader sees the old file or the new one, whole."""
    data = json.dumps(doc, indent=1, sort_keys=True).encode()
    write_bytes(path, data, scratch, durable=durable)


def write_bytes(path: Path, data: bytes, scratch: Path, *, durable: bool = True) -> None:
    """``durable=False``: atomic only, for files that a later sync of the store covers before anything
    points at them. An ``fsync`` here is not cheap during a pull: on ext4 it commits the journal, which
    first writes out the data of every file allocated in the same transaction (other layers' too),
    measured at 0.05-0.2 s per layer.json under load."""
    fd, tmp = tempfile.mkstemp(dir=scratch)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)
