from __future__ import annotations

import pytest

from atoll.scheduler.affinity import (
    affinity_holds,
    constraint_holds,
    parse_affinity,
    parse_constraint,
    parse_env,
    parse_labels,
    parse_rules,
)
from atoll.scheduler.model import AffinityRule, Constraint, InvalidRule, PlacedInstance


def test_hard_affinity_by_name() -> None:
    assert parse_affinity("container==web") == AffinityRule("container", "==", "web", hard=True)


def test_anti_affinity_glob() -> None:
    assert parse_affinity("container!=db*") == AffinityRule("container", "!=", "db*", hard=True)


def test_soft_rule() -> None:
    assert parse_affinity("container==~web") == AffinityRule("container", "==", "web", hard=False)
    assert str(parse_affinity("role!=~cache")) == "role!=~cache"


def test_label_affinity() -> None:
    assert parse_affinity("com.example.tier==front") == AffinityRule("com.example.tier", "==", "front")


def test_constraint() -> None:
    assert parse_constraint("region==eu") == Constraint("region", "==", "eu")
    assert parse_constraint("disk!=hdd") == Constraint("disk", "!=", "hdd")


@pytest.mark.parametrize("bad", ["container", "container=web", "container==", "==web", "a b==c", "x==/re.*/"])
def test_bad_affinity_names_the_entry(bad: str) -> None:
    with pytest.raises(InvalidRule, match="affinity"):
        parse_affinity(bad)


def test_soft_constraint_refused() -> None:
    with pytest.raises(InvalidRule, match="soft constraints"):
        parse_constraint("region==~eu")


def test_env_entries() -> None:
    constraints, affinities = parse_env(["PATH=/bin", "affinity:container!=db*", "constraint:region==eu"])
    assert constraints == (Constraint("region", "==", "eu"),)
    assert affinities == (AffinityRule("container", "!=", "db*"),)


def test_env_error_names_entry() -> None:
    with pytest.raises(InvalidRule, match="affinity:container<>db"):
        parse_env(["affinity:container<>db"])


def test_labels_json_lists() -> None:
    labels = {
        "com.docker.swarm.affinities": '["container==~web"]',
        "com.docker.swarm.constraints": '["zone!=b"]',
        "other": "x",
    }
    assert parse_labels(labels) == (
        (Constraint("zone", "!=", "b"),),
        (AffinityRule("container", "==", "web", hard=False),),
    )


@pytest.mark.parametrize("raw", ["not json", '{"a": 1}', "[1]"])
def test_labels_bad_json(raw: str) -> None:
    with pytest.raises(InvalidRule, match=r"com\.docker\.swarm\.affinities"):
        parse_labels({"com.docker.swarm.affinities": raw})


def test_parse_rules_merges_env_and_labels() -> None:
    c, a = parse_rules(["constraint:a==1"], {"com.docker.swarm.constraints": '["b==2"]'})
    assert [str(x) for x in c] == ["a==1", "b==2"]
    assert a == ()


def test_constraint_holds() -> None:
    assert constraint_holds(Constraint("region", "==", "eu-*"), {"region": "eu-west"})
    assert not constraint_holds(Constraint("region", "==", "eu"), {})
    assert constraint_holds(Constraint("region", "!=", "eu"), {})
    assert not constraint_holds(Constraint("region", "!=", "eu"), {"region": "eu"})


def test_affinity_holds() -> None:
    on_host = [PlacedInstance("db-1", {"tier": "data"})]
    assert affinity_holds(AffinityRule("container", "==", "db*"), on_host)
    assert not affinity_holds(AffinityRule("container", "!=", "db*"), on_host)
    assert affinity_holds(AffinityRule("tier", "==", "data"), on_host)
    assert affinity_holds(AffinityRule("tier", "!=", "front"), on_host)
    assert not affinity_holds(AffinityRule("container", "==", "web"), [])
