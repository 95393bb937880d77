"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from atoll.client import AtollAPI
from atoll.schemas import InstanceCreate


def run(api: AtollAPI, *command: str, image: str = "busybox", **fields: Any) -> str:
    """Create and start an instance; return its id."""
    cmd = list(command) or None  # no command: the image's own
    inst = api.create_instance(InstanceCreate(image=image, command=cmd, **fields))
    api.start_instance(inst.id)
    return inst.id


def output(api: AtollAPI, ref: str, **kw: object) -> dict[int, bytes]:
    """The whole log of an instance, by stream id (1 stdout, 2 stderr)."""
    out: dict[int, bytes] = {1: b"", 2: b""}
    for stream, data in api.logs(ref, **kw):  # type: ignore[arg-type]
        out[stream] += data
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")
