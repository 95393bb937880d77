"""Suite-wide guards: tests run as root on a real kernel and must leave nothing behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CGROUP_ROOTS = (
    [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()] if Path("/sys/fs/cgroup").exists() else []
)
TEST_MARK = "atoll-test"


def _leftovers() -> dict[str, set[str]]:
    mounts = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4]
            if TEST_MARK in mountpoint or "/pytest-of-" in mountpoint:
                mounts.add(mountpoint)
    cgroups = set()
    for root in CGROUP_ROOTS:
        for child in (root, *[p for p in root.iterdir() if p.is_dir()]):
            for entry in child.glob(f"{TEST_MARK}*"):
                cgroups.add(str(entry))
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    processes = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            membership = Path(f"/proc/{pid}/cgroup").read_text()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if TEST_MARK in membership and state != "Z":
            processes.add(pid)
    tmp = Path(tempfile.gettempdir())
    return {
        "tmp": {p.name for p in tmp.glob("atoll-*")},
        "mounts": mounts,
        "cgroups": cgroups,
        "netns": {n for n in netns if TEST_MARK in n},
        "processes": processes,
    }


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Fail the run if any mount, cgroup, netns, process or temporary directory made by a test survives it."""
    if os.geteuid() != 0:
        pytest.exit("Atoll's tests drive real containers and need root", returncode=2)
    before = _leftovers()
    yield
    after = _leftovers()
    leaked = {kind: sorted(after[kind] - before[kind]) for kind in after if after[kind] - before[kind]}
    assert not leaked, f"tests left these behind: {leaked}"
