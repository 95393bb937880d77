from __future__ import annotations

import pytest

from atoll.scheduler.model import AffinityRule, Overcommit, Request
from atoll.scheduler.scores import (
    IMAGE_BONUS,
    SOFT_RULE_WEIGHT,
    best,
    binpack_score,
    dominant_share,
    image_score,
    score,
    soft_affinity_score,
    spread_score,
)
from tests.scheduler.factories import GIB, host, used

OC = Overcommit(cpu=1.0)


def test_dominant_share_is_the_scarcest_resource_after_placement() -> None:
    share = dominant_share(Request(1000, 1 * GIB), host("a"), used("a", cpu=1000, mem_gib=6), OC)
    assert share == pytest.approx(7 / 8)


def test_binpack_prefers_fuller_spread_prefers_emptier() -> None:
    req = Request(500, GIB)
    full, empty = used("a", cpu=3000), used("b")
    assert binpack_score(req, host("a"), full, OC) > binpack_score(req, host("b"), empty, OC)
    assert spread_score(req, host("a"), full, OC) < spread_score(req, host("b"), empty, OC)


def test_overcommit_changes_the_share() -> None:
    req = Request(2000, 0)
    assert binpack_score(req, host("a"), used("a"), Overcommit(cpu=4.0)) == pytest.approx(0.125)


def test_image_bonus() -> None:
    req = Request(100, GIB, image="sha256:abc")
    assert image_score(req, used("a", images=frozenset({"sha256:abc"}))) == IMAGE_BONUS
    assert image_score(req, used("a")) == 0.0
    assert image_score(Request(100, GIB), used("a", images=frozenset({""}))) == 0.0


def test_soft_affinity_and_anti_affinity() -> None:
    rules = (
        AffinityRule("container", "==", "web*", hard=False),
        AffinityRule("role", "!=", "db", hard=False),
    )
    req = Request(100, GIB, affinities=rules)
    assert soft_affinity_score(req, used("a", names=("web-1",))) == 2 * SOFT_RULE_WEIGHT
    assert soft_affinity_score(req, used("a", names=("web-1", "db-1"))) == SOFT_RULE_WEIGHT
    assert soft_affinity_score(req, used("a", names=("db-1",))) == 0.0


def test_soft_rule_outweighs_strategy() -> None:
    req = Request(100, GIB, affinities=(AffinityRule("container", "==", "web", hard=False),))
    near = score(req, host("a"), used("a", names=("web",)), OC)
    fuller = score(req, host("b"), used("b", cpu=3800, mem_gib=6), OC)
    assert near > fuller


def test_tie_breaks_by_host_id() -> None:
    assert best({"b": 1.0, "a": 1.0, "c": 0.5}) == "a"
    assert best({"b": 2.0, "a": 1.0}) == "b"
