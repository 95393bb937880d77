from __future__ import annotations

from collections.abc import Sequence

from atoll.scheduler.filters import (
    affinity_filter,
    capacity_filter,
    constraint_filter,
    kind_filter,
    run_filters,
    state_filter,
)
from atoll.scheduler.model import AffinityRule, Constraint, HostCapacity, Overcommit, Request
from tests.scheduler.factories import GIB, host, used

OC = Overcommit()


def ids(hosts: Sequence[HostCapacity]) -> list[str]:
    return [h.id for h in hosts]


def test_state() -> None:
    hosts = [host("a"), host("b", state="draining"), host("c", state="down")]
    r = state_filter(Request(100, GIB), hosts, {}, OC)
    assert ids(r.accepted) == ["a"]
    assert r.rejected == {"state draining": 1, "state down": 1}


def test_kind() -> None:
    hosts = [host("a"), host("b", kinds=frozenset({"container", "vm"}))]
    r = kind_filter(Request(100, GIB, kind="vm"), hosts, {}, OC)
    assert ids(r.accepted) == ["b"]
    assert r.rejected == {"kind vm": 1}


def test_constraints_charge_first_failure() -> None:
    hosts = [host("a", labels={"region": "eu", "disk": "ssd"}), host("b", labels={"region": "us"}), host("c")]
    req = Request(100, GIB, constraints=(Constraint("region", "==", "eu"), Constraint("disk", "==", "ssd")))
    r = constraint_filter(req, hosts, {}, OC)
    assert ids(r.accepted) == ["a"]
    assert r.rejected == {"constraint region==eu": 2}


def test_hard_affinity_and_anti_affinity() -> None:
    hosts = [host("a"), host("b"), host("c")]
    usage = {"a": used("a", names=("web-1",)), "b": used("b", names=("db-1", "web-2"))}
    anti = Request(100, GIB, affinities=(AffinityRule("container", "!=", "db*"),))
    assert ids(affinity_filter(anti, hosts, usage, OC).accepted) == ["a", "c"]
    near = Request(100, GIB, affinities=(AffinityRule("container", "==", "web*"),))
    r = affinity_filter(near, hosts, usage, OC)
    assert ids(r.accepted) == ["a", "b"]
    assert r.rejected == {"affinity container==web*": 1}


def test_soft_affinity_does_not_filter() -> None:
    req = Request(100, GIB, affinities=(AffinityRule("container", "==", "web", hard=False),))
    assert len(affinity_filter(req, [host("a")], {}, OC).accepted) == 1


def test_capacity_per_resource_with_overcommit() -> None:
    hosts = [host("a", cpu=1000, mem_gib=8), host("b", cpu=8000, mem_gib=2), host("c", cpu=1000, mem_gib=8)]
    usage = {"c": used("c", cpu=3800)}
    req = Request(cpu_millis=2000, memory_bytes=4 * GIB)
    r = capacity_filter(req, hosts, usage, Overcommit(cpu=4.0))
    assert ids(r.accepted) == ["a"]
    assert r.rejected == {"memory": 1, "cpu": 1}
    assert capacity_filter(req, hosts, {}, Overcommit(cpu=1.0)).rejected == {"cpu": 2, "memory": 1}


def test_capacity_disk_and_pids() -> None:
    req = Request(0, 0, disk_bytes=200 * GIB)
    assert capacity_filter(req, [host("a")], {}, OC).rejected == {"disk": 1}
    req = Request(0, 0, pids=20_000)
    assert capacity_filter(req, [host("a")], {}, OC).rejected == {"pids": 1}


def test_exact_fit_is_accepted() -> None:
    assert capacity_filter(Request(4000, 8 * GIB), [host("a")], {}, Overcommit(cpu=1.0)).accepted


def test_chain_counts_add_up() -> None:
    hosts = [host("a", state="down"), host("b", labels={"region": "us"}), host("c", mem_gib=1), host("d")]
    req = Request(100, 2 * GIB, constraints=(Constraint("region", "!=", "us"),))
    r = run_filters(req, hosts, {}, OC)
    assert ids(r.accepted) == ["d"]
    assert r.rejected == {"state down": 1, "constraint region!=us": 1, "memory": 1}
