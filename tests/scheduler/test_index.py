"""The indexed path (`FleetIndex`, `place_many_indexed`): same guarantees as `place_many`.

Every indexed placement must pass every filter against the claims made before it, and a request fails
exactly when the linear scan fails too, with the same per-filter counts.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.scheduler import (
    AffinityRule,
    FleetIndex,
    HostCapacity,
    HostUsage,
    NoHostFits,
    Overcommit,
    Placement,
    Request,
    place,
    place_many_indexed,
)
from atoll.scheduler.filters import run_filters
from tests.scheduler import strategies
from tests.scheduler.factories import GIB, host, used

hosts_st = strategies.hosts(max_size=12, varied=True)
requests_st = strategies.requests(varied=True)
overcommit_st = strategies.overcommit


@settings(max_examples=200, deadline=None)
@given(
    hosts=hosts_st,
    requests=requests_st,
    oc=overcommit_st,
    sample=st.integers(1, 4),
    max_scan=st.integers(1, 6),
)
def test_indexed_placements_are_valid_and_fail_only_when_nothing_fits(
    hosts: list[HostCapacity], requests: list[Request], oc: Overcommit, sample: int, max_scan: int
) -> None:
    batch = place_many_indexed(requests, hosts, {}, oc, sample=sample, max_scan=max_scan)
    usage: dict[str, HostUsage] = {}
    for request, result in zip(requests, batch.results, strict=True):
        if isinstance(result, NoHostFits):
            with pytest.raises(NoHostFits) as linear:
                place(request, hosts, usage, oc)
            assert linear.value.rejected == result.rejected
            continue
        assert isinstance(result, Placement)
        passed = run_filters(request, hosts, usage, oc)
        assert result.host_id in {h.id for h in passed.accepted}, "every filter holds, before the claim"
        usage[result.host_id] = usage.get(result.host_id, HostUsage(result.host_id)).plus(request)
    # The index's own bookkeeping is the sum of its placements, and within every limit.
    assert {k: v.vector for k, v in batch.usage.items()} == {k: v.vector for k, v in usage.items()}
    for h in hosts:
        u = usage.get(h.id, HostUsage(h.id))
        assert all(have <= limit for have, limit in zip(u.vector, oc.limits(h), strict=True))


def test_binpack_takes_the_tightest_fit() -> None:
    hosts = [host("a"), host("b"), host("c")]
    usage = {"a": used("a", mem_gib=2), "b": used("b", mem_gib=5), "c": used("c", mem_gib=7)}
    index = FleetIndex(hosts, usage, Overcommit(cpu=1.0))
    assert index.place(Request(100, 2 * GIB)).host_id == "b"


def test_spread_takes_the_emptiest() -> None:
    hosts = [host("a"), host("b"), host("c")]
    usage = {"a": used("a", mem_gib=2), "c": used("c", mem_gib=7)}
    index = FleetIndex(hosts, usage, Overcommit(cpu=1.0))
    assert index.place(Request(100, GIB, strategy="spread")).host_id == "b"


def test_claims_move_hosts_in_the_index() -> None:
    hosts = [host("a", mem_gib=8), host("b", mem_gib=8)]
    index = FleetIndex(hosts, {}, Overcommit(cpu=1.0))
    for _ in range(4):  # 4 x 4 GiB on two 8 GiB hosts: exactly full, never over
        chosen = index.place(Request(100, 4 * GIB))
        index.claim(chosen.host_id, Request(100, 4 * GIB))
    assert {u.memory_bytes for u in index.usage.values()} == {8 * GIB}
    with pytest.raises(NoHostFits, match="memory rejected 2 hosts"):
        index.place(Request(100, GIB))


def test_hard_anti_affinity_on_the_indexed_path() -> None:
    hosts = [host(f"h{i}") for i in range(3)]
    requests = [
        Request(100, GIB, name=f"db-{i}", affinities=(AffinityRule("container", "!=", "db*"),))
        for i in range(4)
    ]
    batch = place_many_indexed(requests, hosts, {})
    placed = [r.host_id for r in batch.results if isinstance(r, Placement)]
    assert sorted(placed) == ["h0", "h1", "h2"]
    assert isinstance(batch.results[3], NoHostFits)
    assert "affinity container!=db* rejected 3 hosts" in str(batch.results[3])


def test_affinity_to_an_instance_uses_the_exact_scan() -> None:
    hosts = [host("a"), host("b"), host("c")]
    usage = {"c": used("c", names=("web-1",))}
    index = FleetIndex(hosts, usage)
    soft = Request(100, GIB, affinities=(AffinityRule("container", "==", "web*", hard=False),))
    assert index.place(soft).host_id == "c"
    hard = Request(100, GIB, affinities=(AffinityRule("container", "==", "web*"),))
    assert index.place(hard).host_id == "c"
