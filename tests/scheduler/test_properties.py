"""Properties that must hold for any fleet and any request stream, checked with hypothesis."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.scheduler import (
    HostCapacity,
    HostUsage,
    Overcommit,
    Placement,
    Request,
    drain_plan,
    place_many,
)
from atoll.scheduler.affinity import instance_matches
from atoll.scheduler.model import PlacedInstance
from tests.scheduler import strategies
from tests.scheduler.strategies import MIB

hosts_st = strategies.hosts(max_size=8)
requests_st = strategies.requests()
overcommit_st = strategies.overcommit


def _within_limits(hosts: list[HostCapacity], usage: dict[str, HostUsage], oc: Overcommit) -> None:
    for h in hosts:
        u = usage.get(h.id, HostUsage(h.id))
        for have, limit in zip(u.vector, oc.limits(h), strict=True):
            assert have <= limit, (h, u)


@settings(max_examples=150, deadline=None)
@given(hosts=hosts_st, requests=requests_st, oc=overcommit_st)
def test_place_many_is_safe(hosts: list[HostCapacity], requests: list[Request], oc: Overcommit) -> None:
    batch = place_many(requests, hosts, {}, oc)
    usage = dict(batch.usage)
    _within_limits(hosts, usage, oc)
    by_id = {h.id: h for h in hosts}
    on_host: dict[str, list[PlacedInstance]] = defaultdict(list)
    for req, result in zip(requests, batch.results, strict=True):
        if not isinstance(result, Placement):
            continue
        assert by_id[result.host_id].state == "ready"
        for rule in req.affinities:
            assert not any(instance_matches(rule, i) for i in on_host[result.host_id]), "hard anti-affinity"
        on_host[result.host_id].append(PlacedInstance(req.name, req.labels))
    # The returned usage is exactly the sum of the placements.
    for h in hosts:
        placed = [
            r
            for r, p in zip(requests, batch.results, strict=True)
            if isinstance(p, Placement) and p.host_id == h.id
        ]
        assert usage.get(h.id, HostUsage(h.id)).memory_bytes == sum(r.memory_bytes for r in placed)


def _hosts_used(requests: list[Request], hosts: list[HostCapacity]) -> int:
    batch = place_many(requests, hosts, {}, Overcommit(cpu=1.0))
    return len({r.host_id for r in batch.results if isinstance(r, Placement)})


@settings(max_examples=150, deadline=None)
@given(
    n_hosts=st.integers(1, 8),
    cpu=st.integers(1000, 8000),
    mem=st.integers(1024, 8192),
    sizes=st.lists(st.tuples(st.integers(0, 8000), st.integers(0, 8192)), max_size=40),
)
def test_binpack_uses_no_more_hosts_than_spread_on_identical_hosts(
    n_hosts: int, cpu: int, mem: int, sizes: list[tuple[int, int]]
) -> None:
    """Provable for identical, empty, ready hosts without rules: spread puts every request that fits an
    empty host on a fresh host while one is left, so it uses min(hosts, such requests); binpack can never
    use more hosts than either. (With heterogeneous hosts or rules it is a heuristic, not a theorem.)"""
    hosts = [HostCapacity(f"h{i}", cpu, mem * MIB) for i in range(n_hosts)]
    binpack = [Request(c, m * MIB, strategy="binpack") for c, m in sizes]
    spread = [Request(c, m * MIB, strategy="spread") for c, m in sizes]
    assert _hosts_used(binpack, hosts) <= _hosts_used(spread, hosts)


@settings(max_examples=150, deadline=None)
@given(hosts=hosts_st, requests=requests_st, oc=overcommit_st, data=st.data())
def test_drain_plan_never_overcommits(
    hosts: list[HostCapacity], requests: list[Request], oc: Overcommit, data: st.DataObject
) -> None:
    if not hosts:
        return
    batch = place_many(requests, hosts, {}, oc)
    source = data.draw(st.sampled_from(hosts)).id
    on_source = {
        f"i{n}": r
        for n, (r, p) in enumerate(zip(requests, batch.results, strict=True))
        if isinstance(p, Placement) and p.host_id == source
    }
    plan = drain_plan(source, hosts, batch.usage, on_source, oc)
    _within_limits([h for h in hosts if h.id != source], dict(plan.usage), oc)
    assert {i for i, _ in plan.moves} | set(plan.unmovable) == set(on_source)
    by_id = {h.id: h for h in hosts}
    assert all(target != source and by_id[target].state == "ready" for _, target in plan.moves)
