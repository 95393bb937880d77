"""Removing instance directories off the critical path.

Deleting a directory tree on a busy disk costs tens of milliseconds (one journalled unlink per entry),
and ``docker rm`` / ``--rm`` wait for the removal. So removal renames the tree into the trash (one
rename on the same filesystem: the instance's directory is gone at once) and deletes it in the
background. The trash is emptied again whenever the agent starts, so a tree whose deletion was cut
short by a restart does not stay behind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path


class Trash:
    def __init__(self, root: Path) -> None:
        self.root = root

    def take(self, path: Path) -> Path | None:
        """Move ``path`` into the trash; returns where it went, or None if there was nothing to move.
        Falls back to deleting in place when a rename is impossible (another filesystem)."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / f"{path.name}.{secrets.token_hex(4)}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            return None
        return target

    async def empty(self) -> None:
        """Delete everything in the trash (in a thread: it may be large)."""
        if self.root.is_dir():
            await asyncio.to_thread(self._empty)

    def _empty(self) -> None:
        for entry in list(self.root.iterdir()):
            shutil.rmtree(entry, ignore_errors=True)
