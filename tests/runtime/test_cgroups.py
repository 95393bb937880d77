"""CgroupReader and cleanup against fake v1 and v2 trees (the real hierarchy is exercised by the
container tests on whatever this host has)."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.agent.runtime import cgroups
from atoll.agent.runtime.cgroups import CgroupReader, cgroup_version, list_cgroups, remove_cgroup
from atoll.model.errors import RuntimeFailure


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "v2"
    write(root / "cgroup.controllers", "cpu memory pids\n")
    cg = root / "atoll" / "c1"
    write(cg / "memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    write(cg / "memory.current", "1048576\n")
    write(cg / "pids.current", "3\n")
    write(cg / "cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    write(cg / "cgroup.procs", "10\n11\n")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", root)
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {cgroups.UNIFIED: root})
    return root


@pytest.fixture
def v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "v1"
    write(
        root / "memory" / "atoll" / "c1" / "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    )
    write(root / "memory" / "atoll" / "c1" / "memory.usage_in_bytes", "4096\n")
    write(root / "memory" / "atoll" / "c1" / "cgroup.procs", "7\n")
    write(root / "pids" / "atoll" / "c1" / "pids.current", "1\n")
    write(root / "cpu,cpuacct" / "atoll" / "c1" / "cpuacct.usage", "123456789\n")
    (root / "unified").mkdir()
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", root)
    monkeypatch.setattr(
        cgroups,
        "hierarchies",
        lambda: {
            "memory": root / "memory",
            "pids": root / "pids",
            "cpu": root / "cpu,cpuacct",
            "cpuacct": root / "cpu,cpuacct",
            "name=systemd": root / "systemd",
            cgroups.UNIFIED: root / "unified",
        },
    )
    return root


def test_v2_reader(v2: Path) -> None:
    assert cgroup_version() == 2
    r = CgroupReader("/atoll/c1")
    assert r.exists()
    assert (r.oom_kills(), r.memory_usage(), r.pids_current(), r.cpu_usage_ns()) == (2, 1048576, 3, 1_500_000)
    assert r.procs() == [10, 11]
    assert list_cgroups("atoll") == ["/atoll/c1"]


def test_v1_reader(v1: Path) -> None:
    assert cgroup_version() == 1
    r = CgroupReader("/atoll/c1")
    assert (r.oom_kills(), r.memory_usage(), r.pids_current(), r.cpu_usage_ns()) == (1, 4096, 1, 123456789)
    assert r.procs() == [7]
    assert list_cgroups("/atoll/") == ["/atoll/c1"]


def test_a_removed_cgroup_reads_as_zero(v2: Path) -> None:
    r = CgroupReader("/atoll/gone")
    assert not r.exists()
    assert (r.oom_kills(), r.memory_usage(), r.pids_current(), r.cpu_usage_ns(), r.procs()) == (
        0,
        0,
        0,
        0,
        [],
    )
    assert list_cgroups("nothing") == []


def test_remove_cgroup_everywhere_and_idempotent(v1: Path) -> None:
    for hierarchy in ("memory", "pids", "systemd", "unified"):
        (v1 / hierarchy / "leftover" / "child").mkdir(parents=True)
    remove_cgroup("/leftover")
    assert not any((v1 / h / "leftover").exists() for h in ("memory", "pids", "systemd", "unified"))
    remove_cgroup("/leftover")
    with pytest.raises(ValueError):
        remove_cgroup("/")
    with pytest.raises(ValueError):
        remove_cgroup("/a/../..")


def test_remove_reports_what_it_could_not_remove(v1: Path) -> None:
    # A fake cgroup with a file in it behaves like a busy one: rmdir fails.
    with pytest.raises(RuntimeFailure, match="cannot remove cgroup"):
        remove_cgroup("/atoll/c1")
