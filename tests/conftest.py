"""Suite-wide guards: tests run as root on a real kernel and must leave nothing behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.store.db import open_database
from tests.pgcluster import PrivateServer, private_server
from tests.prefix import NET_PREFIX, NFT_TABLE, RUN_PREFIX

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _leftovers(basetemp: str) -> dict[str, set[str]]:
    mounts = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4]
            if RUN_PREFIX in mountpoint or mountpoint.startswith(basetemp):
                mounts.add(mountpoint)
    cgroups: set[str] = set()
    if CGROUP_ROOT.is_dir():
        for hierarchy in (CGROUP_ROOT, *[p for p in CGROUP_ROOT.iterdir() if p.is_dir()]):
            cgroups.update(str(p) for p in hierarchy.glob(f"{RUN_PREFIX}*"))
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    processes = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            membership = Path(f"/proc/{pid}/cgroup").read_text()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if RUN_PREFIX in membership and state != "Z":
            processes.add(pid)
    return {
        "links": {name for name in os.listdir("/sys/class/net") if name.startswith(NET_PREFIX)},
        "nft tables": _nft_tables(),
        "mounts": mounts,
        "cgroups": cgroups,
        "netns": {n for n in netns if RUN_PREFIX in n},
        "processes": processes,
    }


def _nft_tables() -> set[str]:
    """This run's nftables tables (any family) in the host's namespace."""
    try:
        listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:
        return set()
    return {
        line.strip()
        for line in listed.splitlines()
        if line.split() and line.split()[-1].startswith(NFT_TABLE)
    }


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the run if any mount, cgroup, netns, link, nft table or process made by this run survives it."""
    if os.geteuid() != 0:
        pytest.exit("Atoll's tests drive real containers and need root", returncode=2)
    basetemp = str(tmp_path_factory.getbasetemp())
    before = _leftovers(basetemp)
    yield
    after = _leftovers(basetemp)
    leaked = {kind: sorted(after[kind] - before[kind]) for kind in after if after[kind] - before[kind]}
    assert not leaked, f"tests left these behind: {leaked}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PrivateServer]:
    """One private PostgreSQL server for the run, started on first use (tests/pgcluster.py)."""
    with private_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_template(pg_server: PrivateServer) -> str:
    """A database migrated to head with its default project: each test copies it (~0.1 s) instead of
    migrating its own."""
    name = pg_server.create_database()
    open_database(pg_server.url(name)).kw["bind"].dispose()
    return name


@pytest.fixture
def pg_url(pg_server: PrivateServer, pg_template: str) -> Iterator[str]:
    """A fresh database of this test's own, at the current schema."""
    name = pg_server.create_database(template=pg_template)
    yield pg_server.url(name)
    pg_server.drop_database(name)
