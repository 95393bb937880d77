"""Hypothesis strategies of fleets and request streams, shared by the property tests of the linear
scheduler (``test_properties.py``) and of the indexed one (``test_index.py``).

The plain variants exercise capacity, state and anti-affinity; ``varied=True`` adds host labels,
runtime kinds, zone constraints, affinity as well as anti-affinity, and soft rules (the indexed path
must give the same answers as the linear scan on all of them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import strategies as st

from atoll.scheduler import AffinityRule, Constraint, HostCapacity, Overcommit, Request

MIB = 1 << 20


def hosts(max_size: int, *, varied: bool = False) -> st.SearchStrategy[list[HostCapacity]]:
    """Up to ``max_size`` hosts with ids ``h00``, ``h01``... in any state, some of them empty."""
    extra: dict[str, Any] = {}
    if varied:
        extra = {
            "labels": st.sampled_from([{}, {"zone": "a"}, {"zone": "b"}]),
            "kinds": st.sampled_from([frozenset({"container"}), frozenset({"container", "vm"})]),
        }
    return st.lists(
        st.builds(
            HostCapacity,
            id=st.just(""),
            cpu_millis=st.integers(0, 8000),
            memory_bytes=st.integers(0, 8192).map(lambda m: m * MIB),
            disk_bytes=st.integers(0, 100).map(lambda g: g * 1024 * MIB),
            pids=st.integers(0, 500),
            **extra,
            state=st.sampled_from(["ready", "ready", "ready", "draining", "down"]),
        ),
        min_size=0,
        max_size=max_size,
    ).map(lambda hs: [dataclasses.replace(h, id=f"h{i:02}") for i, h in enumerate(hs)])


def rules(*, varied: bool = False) -> st.SearchStrategy[tuple[AffinityRule, ...]]:
    """Affinity rules on instance names: one hard anti-affinity, or (varied) up to two of any kind."""
    if not varied:
        rule = st.builds(
            AffinityRule, key=st.just("container"), op=st.just("!="), pattern=st.sampled_from(["db*", "web*"])
        )
        return st.lists(rule, max_size=1).map(tuple)
    rule = st.builds(
        AffinityRule,
        key=st.just("container"),
        op=st.sampled_from(["!=", "!=", "=="]),
        pattern=st.sampled_from(["db*", "web*"]),
        hard=st.sampled_from([True, True, False]),
    )
    return st.lists(rule, max_size=2).map(tuple)


def constraints() -> st.SearchStrategy[tuple[Constraint, ...]]:
    constraint = st.builds(
        Constraint, key=st.just("zone"), op=st.sampled_from(["==", "!="]), pattern=st.just("a")
    )
    return st.lists(constraint, max_size=1).map(tuple)


def requests(*, varied: bool = False) -> st.SearchStrategy[list[Request]]:
    """Up to 40 requests of mixed sizes, names, rules and strategies."""
    extra: dict[str, Any] = {}
    if varied:
        extra = {"kind": st.sampled_from(["container", "container", "vm"]), "constraints": constraints()}
    return st.lists(
        st.builds(
            Request,
            cpu_millis=st.integers(0, 4000),
            memory_bytes=st.integers(0, 4096).map(lambda m: m * MIB),
            disk_bytes=st.integers(0, 30).map(lambda g: g * 1024 * MIB),
            pids=st.integers(0, 200),
            **extra,
            name=st.sampled_from(["db-1", "db-2", "web-1", "web-2", "cache"]),
            affinities=rules(varied=varied),
            strategy=st.sampled_from(["binpack", "spread"]),
        ),
        max_size=40,
    )


overcommit = st.builds(
    Overcommit,
    cpu=st.sampled_from([1.0, 2.0, 4.0]),
    memory=st.sampled_from([1.0, 1.5]),
    disk=st.just(1.0),
    pids=st.just(1.0),
)
