"""Placement: filters, scores, affinity and consolidation plans. Pure functions over frozen data, no I/O.

The controller snapshots hosts and allocations, calls `place` / `place_many` / `drain_plan`, and writes the
result back under its placement lock; see docs/scheduler.md.
"""

from atoll.scheduler.affinity import parse_affinity, parse_constraint, parse_env, parse_labels, parse_rules
from atoll.scheduler.consolidate import DrainPlan, drain_plan
from atoll.scheduler.index import FleetIndex, place_many_indexed
from atoll.scheduler.model import (
    AffinityRule,
    Constraint,
    HostCapacity,
    HostUsage,
    InvalidRule,
    NoHostFits,
    Overcommit,
    PlacedInstance,
    Placement,
    PlacementError,
    Request,
)
from atoll.scheduler.place import Batch, place, place_many

__all__ = [
    "AffinityRule",
    "Batch",
    "Constraint",
    "DrainPlan",
    "FleetIndex",
    "HostCapacity",
    "HostUsage",
    "InvalidRule",
    "NoHostFits",
    "Overcommit",
    "PlacedInstance",
    "Placement",
    "PlacementError",
    "Request",
    "drain_plan",
    "parse_affinity",
    "parse_constraint",
    "parse_env",
    "parse_labels",
    "parse_rules",
    "place",
    "place_many",
    "place_many_indexed",
]
