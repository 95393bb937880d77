"""`atoll` with its image store's syncs held while a file exists: ``python held_sync.py HOLD ARGS...``.

tests/e2e/test_pull_durable.py runs `atoll up` through this to catch a pull between its return and its
layers reaching the disk (and to kill the cloud there). The hold is the test's own code at our boundary,
the store's ``syncfs`` wrapper, put in before the store opens; the product has no switch for it. Every
sync, once let go, is the real ``syncfs``."""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path
from unittest import mock

from atoll.agent.images import durable
from atoll.agent.images.syncfs import syncfs
from atoll.cli.main import app


def held_syncfs(hold: Path, path: Path) -> None:
    while hold.exists():
        time.sleep(0.02)
    syncfs(path)


def main() -> None:
    hold = Path(sys.argv[1])
    sys.argv = ["atoll", *sys.argv[2:]]
    with mock.patch.object(durable, "syncfs", partial(held_syncfs, hold)):  # read as the store opens
        app()


if __name__ == "__main__":
    main()
