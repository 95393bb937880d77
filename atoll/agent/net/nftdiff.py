"""How a new rule set reaches the kernel: as the change from the one applied last, in one transaction.

``nft.render`` describes our tables whole, and replacing them whole (declare, delete, define) is
always right but costs the kernel a rebuild of every set, map and chain: ~20 ms and more on a busy
host, paid for every container started or removed. Most changes are small: a port joins or leaves,
so elements are added to or deleted from a few sets and maps (the bridged pairs, the security maps,
a group's members, the anti-spoofing sets), and a port in a new combination of groups brings a new
pair of chains. ``change`` compares the script applied last with the new one and, when only that
kind of thing differs, writes an ``nft -f`` script of just those commands, still one atomic
transaction:

1. new sets and maps, then new regular chains (declared first, so rules may jump between them),
   then their rules;
2. deleted elements, then added ones (a map key whose verdict changes is deleted and added again);
3. chains that are gone, then sets and maps that are gone (nothing refers to them any more).

Anything else (a rule of an existing chain, a base chain, a set's type or flags, the tables
themselves, a line this parser does not know) makes ``change`` return None, and the caller applies
the whole script as before. The parser knows only the shape ``nft.render`` writes; it is about how a
change is applied, not about what the rules say, so the rule layout can change freely: an unknown
shape costs speed, never correctness. ``apply`` falls back to the whole script if the change fails
(the kernel's tables are not what we applied last).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from atoll.agent.net import nft
from atoll.model.errors import RuntimeFailure

log = logging.getLogger(__name__)

_KINDS = ("set", "map", "chain")


@dataclass
class _Object:
    kind: str
    lines: list[str] = field(default_factory=list)
    """Its whole block, as rendered (first line ``\\tKIND NAME {``, last ``\\t}``)."""
    header: list[str] = field(default_factory=list)
    """Every line but the elements: what must be equal for an element-wise change."""
    elements: list[str] = field(default_factory=list)


@dataclass
class _Table:
    other: list[str] = field(default_factory=list)
    """Lines of the table's body that are not a set, map or chain (a comment): compared as they are."""
    objects: dict[str, _Object] = field(default_factory=dict)


def _parse(script: str) -> tuple[list[str], dict[str, _Table]] | None:
    """(lines outside table blocks, tables by ``family name``), or None for a shape not known here."""
    prelude: list[str] = []
    tables: dict[str, _Table] = {}
    table: _Table | None = None
    obj: _Object | None = None
    for line in script.splitlines():
        if table is None:
            if line.startswith("table ") and line.endswith(" {"):
                key = line[len("table ") : -2]
                if key in tables:
                    return None
                table = tables[key] = _Table()
            elif line.strip():
                prelude.append(line)
            continue
        if obj is not None:
            obj.lines.append(line)
            if line == "\t}":
                obj = None
            elif line.startswith("\t\telements = { ") and line.endswith(" }") and obj.kind != "chain":
                obj.elements = line[len("\t\telements = { ") : -2].split(", ")
            else:
                obj.header.append(line)
            continue
        if line == "}":
            table = None
            continue
        words = line.split()
        if line.startswith("\t") and not line.startswith("\t\t") and len(words) == 3 and words[2] == "{":
            if words[0] not in _KINDS or words[1] in table.objects:
                return None
            obj = table.objects[words[1]] = _Object(words[0], [line], [line])
            continue
        table.other.append(line)
    if table is not None or obj is not None:
        return None
    return prelude, tables


def _key(kind: str, element: str) -> str:
    """What names an element in a delete: a map's key without its verdict."""
    return element.split(" : ", 1)[0] if kind == "map" else element


def change(old: str, new: str) -> str | None:
    """The ``nft -f`` script that turns tables applied as ``old`` into ``new``, or None if only the
    whole ``new`` will do."""
    before, after = _parse(old), _parse(new)
    if before is None or after is None or before[0] != after[0] or before[1].keys() != after[1].keys():
        return None
    adds: list[str] = []
    declares: list[str] = []
    bodies: list[str] = []
    removals: list[str] = []
    additions: list[str] = []
    drops: list[str] = []
    for name, table in after[1].items():
        was = before[1][name]
        if table.other != was.other:
            return None
        new_sets, new_chains = [], []
        for oname, obj in table.objects.items():
            prev = was.objects.get(oname)
            if prev is None:
                if obj.kind == "chain":
                    if any(" hook " in line for line in obj.header):
                        return None  # a base chain: its hook and priority are not for this path
                    declares.append(f"add chain {name} {oname}")
                    new_chains += obj.lines
                else:
                    new_sets += obj.lines
                continue
            if prev.kind != obj.kind or prev.header != obj.header:
                return None
            gone = set(prev.elements) - set(obj.elements)
            came = [e for e in obj.elements if e not in set(prev.elements)]
            if gone:
                keys = ", ".join(sorted({_key(obj.kind, e) for e in gone}))
                removals.append(f"delete element {name} {oname} {{ {keys} }}")
            if came:
                additions.append(f"add element {name} {oname} {{ {', '.join(came)} }}")
        if new_sets:
            adds += [f"table {name} {{", *new_sets, "}"]
        if new_chains:
            bodies += [f"table {name} {{", *new_chains, "}"]
        for oname, prev in was.objects.items():
            if oname not in table.objects:
                drops.append(f"delete {prev.kind} {name} {oname}")
    drops.sort(key=lambda line: not line.startswith("delete chain"))  # chains first: they refer to sets
    commands = [*adds, *declares, *bodies, *removals, *additions, *drops]
    return "\n".join([*commands, ""]) if commands else ""


def apply(old: str | None, new: str) -> None:
    """Make our tables ``new``, given that ``old`` (None: unknown) is what was applied last: the change
    alone when it can be written as one, else (or if it fails) the whole script."""
    script = change(old, new) if old is not None else None
    if script is None:
        nft.apply(new)
        return
    if not script:
        return
    try:
        nft.apply(script)
    except RuntimeFailure as exc:
        log.warning("an incremental rule change failed (%s); loading the whole rule set", exc)
        nft.apply(new)
