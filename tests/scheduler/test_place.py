from __future__ import annotations

import pytest

from atoll.scheduler import (
    AffinityRule,
    Constraint,
    NoHostFits,
    Overcommit,
    Placement,
    Request,
    drain_plan,
    place,
    place_many,
)
from atoll.scheduler.model import PlacementError
from tests.scheduler.factories import GIB, host, used

OC = Overcommit(cpu=1.0)


def test_binpack_picks_fullest_that_fits() -> None:
    hosts = [host("a"), host("b"), host("c")]
    usage = {"a": used("a", mem_gib=2), "b": used("b", mem_gib=5), "c": used("c", mem_gib=7)}
    p = place(Request(100, 2 * GIB), hosts, usage, OC)
    assert p.host_id == "b"
    assert set(p.scores) == {"a", "b"}


def test_spread_picks_emptiest() -> None:
    hosts = [host("a"), host("b")]
    usage = {"a": used("a", mem_gib=2)}
    assert place(Request(100, GIB, strategy="spread"), hosts, usage, OC).host_id == "b"


def test_image_presence_breaks_ties() -> None:
    hosts = [host("a"), host("b")]
    usage = {"b": used("b", images=frozenset({"img"}))}
    assert place(Request(100, GIB, image="img"), hosts, usage, OC).host_id == "b"
    assert place(Request(100, GIB), hosts, usage, OC).host_id == "a"


def test_no_host_fits_message() -> None:
    hosts = [host(f"m{i}", mem_gib=1) for i in range(3)] + [
        host("x", labels={"region": "us"}) for _ in range(2)
    ]
    req = Request(100, 2 * GIB, constraints=(Constraint("region", "==", "eu"),))
    with pytest.raises(NoHostFits) as e:
        place(req, hosts, {}, OC)
    assert str(e.value) == "no host fits: constraint region==eu rejected 5 hosts"
    hosts = [host(f"m{i}", mem_gib=1, labels={"region": "eu"}) for i in range(3)] + [host("u", labels={})]
    with pytest.raises(NoHostFits, match="constraint region==eu rejected 1 host, memory rejected 3 hosts"):
        place(req, hosts, {}, OC)


def test_no_hosts_at_all() -> None:
    with pytest.raises(NoHostFits, match="there are no hosts"):
        place(Request(1, 1), [], {})


def test_place_many_sees_its_own_claims() -> None:
    hosts = [host("a", mem_gib=4), host("b", mem_gib=4)]
    batch = place_many([Request(100, 3 * GIB)] * 3, hosts, {}, OC)
    assert [r.host_id if isinstance(r, Placement) else None for r in batch.results] == ["a", "b", None]
    assert isinstance(batch.results[2], NoHostFits)
    assert str(batch.results[2]) == "no host fits: memory rejected 2 hosts"
    assert batch.placed == 2
    assert batch.usage["a"].memory_bytes == 3 * GIB


def test_place_many_does_not_mutate_input() -> None:
    usage = {"a": used("a")}
    place_many([Request(100, GIB)], [host("a")], usage, OC)
    assert usage == {"a": used("a")}


def test_anti_affinity_within_a_batch() -> None:
    hosts = [host("a"), host("b"), host("c")]
    rule = (AffinityRule("container", "!=", "db*"),)
    batch = place_many([Request(100, GIB, name=f"db-{i}", affinities=rule) for i in range(4)], hosts, {}, OC)
    placed = [r.host_id for r in batch.results if isinstance(r, Placement)]
    assert placed == ["a", "b", "c"]
    assert "affinity container!=db* rejected 3 hosts" in str(batch.results[3])


def test_affinity_follows_within_a_batch() -> None:
    hosts = [host("a"), host("b")]
    reqs = [Request(100, GIB, name="db", strategy="spread")] + [
        Request(
            100, GIB, name=f"app{i}", strategy="spread", affinities=(AffinityRule("container", "==", "db"),)
        )
        for i in range(3)
    ]
    batch = place_many(reqs, hosts, {"a": used("a", mem_gib=1)}, OC)
    assert {r.host_id for r in batch.results if isinstance(r, Placement)} == {"b"}


def test_drain_plan_moves_everything() -> None:
    hosts = [host("src"), host("a", mem_gib=4), host("b", mem_gib=4)]
    instances = {"i1": Request(100, 3 * GIB), "i2": Request(100, 2 * GIB), "i3": Request(100, GIB)}
    plan = drain_plan("src", hosts, {"src": used("src", mem_gib=6)}, instances, OC)
    assert plan.complete
    assert plan.moves == (("i1", "a"), ("i2", "b"), ("i3", "a"))
    assert "src" not in plan.usage


def test_drain_plan_reports_unmovable() -> None:
    hosts = [host("src"), host("a", mem_gib=2), host("b", state="down")]
    plan = drain_plan("src", hosts, {}, {"big": Request(100, 4 * GIB), "small": Request(100, GIB)}, OC)
    assert plan.moves == (("small", "a"),)
    assert plan.unmovable == {
        "big": "no host fits: state draining rejected 1 host, state down rejected 1 host, "
        "memory rejected 1 host"
    }
    assert not plan.complete


def test_drain_plan_unknown_host() -> None:
    with pytest.raises(PlacementError, match="unknown host"):
        drain_plan("nope", [host("a")], {}, {})
