"""The Swarm/Triton placement syntax, so `docker run -e 'affinity:container!=db*'` works unchanged.

Grammar of one rule: `affinity:<key><op>[~]<glob>` or `constraint:<hostlabel><op><glob>`, where `<op>` is
`==` or `!=`, `~` makes an affinity soft (a preference instead of a filter) and `<key>` is `container`
(instance names) or an instance label. Rules arrive either as env entries or as the labels
`com.docker.swarm.affinities` / `com.docker.swarm.constraints` holding a JSON list of `<key><op><value>`,
which is how Swarm and Triton clients send them. Everything here is parsing; matching lives in `matches`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from atoll.scheduler.model import AffinityRule, Constraint, InvalidRule, PlacedInstance

AFFINITIES_LABEL = "com.docker.swarm.affinities"
CONSTRAINTS_LABEL = "com.docker.swarm.constraints"

_EXPR = re.compile(r"^(?P<key>[A-Za-z0-9_.\-/]+)(?P<op>==|!=)(?P<soft>~?)(?P<value>.*)$")

Rules = tuple[tuple[Constraint, ...], tuple[AffinityRule, ...]]


def _split(expr: str, source: str) -> tuple[str, str, bool, str]:
    m = _EXPR.match(expr.strip())
    if m is None:
        raise InvalidRule(f"{source}: expected <key>==<value> or <key>!=<value>, got {expr!r}")
    value = m["value"]
    if not value:
        raise InvalidRule(f"{source}: empty value in {expr!r}")
    if len(value) > 1 and value.startswith("/") and value.endswith("/"):
        raise InvalidRule(f"{source}: regular expressions are not supported, use a glob: {expr!r}")
    return m["key"], m["op"], bool(m["soft"]), value


def parse_affinity(expr: str, source: str = "affinity") -> AffinityRule:
    """`container!=db*` -> a hard anti-affinity on instance names; `role==~db` -> a soft label affinity."""
    key, op, soft, value = _split(expr, source)
    return AffinityRule(key=key, op="==" if op == "==" else "!=", pattern=value, hard=not soft)


def parse_constraint(expr: str, source: str = "constraint") -> Constraint:
    """`region==eu*` -> hosts whose label `region` matches; `!=` also accepts hosts without the label."""
    key, op, soft, value = _split(expr, source)
    if soft:
        raise InvalidRule(f"{source}: soft constraints (~) are not supported: {expr!r}")
    return Constraint(key=key, op="==" if op == "==" else "!=", pattern=value)


def parse_env(env: Iterable[str]) -> Rules:
    """Rules from env entries; entries that are not `affinity:` or `constraint:` are the workload's own."""
    constraints: list[Constraint] = []
    affinities: list[AffinityRule] = []
    for entry in env:
        if entry.startswith("affinity:"):
            affinities.append(parse_affinity(entry.removeprefix("affinity:"), f"env {entry!r}"))
        elif entry.startswith("constraint:"):
            constraints.append(parse_constraint(entry.removeprefix("constraint:"), f"env {entry!r}"))
    return tuple(constraints), tuple(affinities)


def _json_list(labels: Mapping[str, str], key: str) -> list[str]:
    raw = labels.get(key)
    if raw is None:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InvalidRule(f"label {key}: not a JSON list of strings ({e.msg})") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRule(f"label {key}: not a JSON list of strings")
    return value


def parse_labels(labels: Mapping[str, str]) -> Rules:
    """Rules from the Swarm labels, e.g. `com.docker.swarm.affinities=["container!=db*"]`."""
    constraints = tuple(
        parse_constraint(e, f"label {CONSTRAINTS_LABEL}") for e in _json_list(labels, CONSTRAINTS_LABEL)
    )
    affinities = tuple(
        parse_affinity(e, f"label {AFFINITIES_LABEL}") for e in _json_list(labels, AFFINITIES_LABEL)
    )
    return constraints, affinities


def parse_rules(env: Iterable[str] = (), labels: Mapping[str, str] | None = None) -> Rules:
    """Everything a `docker run` carries, env first then labels, as one pair of rule tuples."""
    env_c, env_a = parse_env(env)
    lab_c, lab_a = parse_labels(labels or {})
    return env_c + lab_c, env_a + lab_a


def constraint_holds(rule: Constraint, host_labels: Mapping[str, str]) -> bool:
    value = host_labels.get(rule.key)
    matched = value is not None and fnmatchcase(value, rule.pattern)
    return matched if rule.op == "==" else not matched


def instance_matches(rule: AffinityRule, instance: PlacedInstance) -> bool:
    value = instance.name if rule.key == "container" else instance.labels.get(rule.key)
    return value is not None and fnmatchcase(value, rule.pattern)


def affinity_holds(rule: AffinityRule, instances: Iterable[PlacedInstance]) -> bool:
    """`==`: some instance on the host matches; `!=`: none does."""
    present = any(instance_matches(rule, i) for i in instances)
    return present if rule.op == "==" else not present
