"""``user[:group]`` resolved against the image's own account files, with Docker's (runc's) rules.

The names mean what the image says they mean, so they are looked up in the image's ``/etc/passwd`` and
``/etc/group`` (read through ``rootpath``, since the image is untrusted), never the host's.

- ``""`` is uid 0, with root's entry if there is one (images ``FROM scratch`` have none). A numeric
  uid needs no passwd entry (its gid is then 0 and its home ``/``).
- When the user is found in passwd, its primary gid and home come from there, and its supplementary
  groups are the groups that list it as a member, unless a group was given explicitly.
- A name that is not in the files is an error the caller sees, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from atoll.agent.runtime.rootpath import read_file_in_root
from atoll.model.errors import InvalidInput

MAX_ID = (1 << 32) - 2  # (uid_t)-1 means "no change" to the kernel


@dataclass(frozen=True)
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


@dataclass(frozen=True)
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _Group:
    name: str
    gid: int
    members: tuple[str, ...]


def _rows(rootfs: Path, path: str, min_fields: int) -> list[list[str]]:
    data = read_file_in_root(rootfs, path)
    if data is None:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            rows.append(fields)
    return rows


def _parse_id(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def _passwd(rootfs: Path) -> list[_Passwd]:
    out = []
    for f in _rows(rootfs, "/etc/passwd", 6):
        uid, gid = _parse_id(f[2]), _parse_id(f[3])
        if uid is not None and gid is not None:
            out.append(_Passwd(f[0], uid, gid, f[5] or "/"))
    return out


def _groups(rootfs: Path) -> list[_Group]:
    out = []
    for f in _rows(rootfs, "/etc/group", 3):
        gid = _parse_id(f[2])
        if gid is not None:
            members = tuple(m.strip() for m in f[3].split(",") if m.strip()) if len(f) > 3 else ()
            out.append(_Group(f[0], gid, members))
    return out


def _numeric(text: str, what: str, spec: str) -> int | None:
    """The id if ``text`` is numeric; an error if it looks numeric but is out of range."""
    if text.lstrip("-").isdigit():
        value = _parse_id(text)
        if value is None:
            raise InvalidInput(f"user: {what} {text} in {spec!r} is out of range")
        return value
    return None


def resolve_user(rootfs: Path, user: str) -> ResolvedUser:
    spec = user.strip()
    user_part, _, group_part = (spec or "0").partition(":")
    if not user_part:
        raise InvalidInput(f"user: {spec!r} names no user")
    if ":" in spec and not group_part:
        raise InvalidInput(f"user: {spec!r} names no group")

    uid = _numeric(user_part, "uid", spec)
    entries = _passwd(rootfs)
    if uid is None:
        entry = next((e for e in entries if e.name == user_part), None)
        if entry is None:
            raise InvalidInput(f'user: no user "{user_part}" in the image\'s /etc/passwd')
    else:
        entry = next((e for e in entries if e.uid == uid), None)

    resolved_uid = entry.uid if entry is not None else (uid if uid is not None else 0)
    gid = entry.gid if entry else 0
    home = entry.home if entry else "/"
    additional: list[int] = []

    groups = _groups(rootfs) if group_part or entry else []
    if group_part:
        gid_value = _numeric(group_part, "gid", spec)
        if gid_value is None:
            group = next((g for g in groups if g.name == group_part), None)
            if group is None:
                raise InvalidInput(f'user: no group "{group_part}" in the image\'s /etc/group')
            gid_value = group.gid
        gid = gid_value
    elif entry is not None:
        for g in groups:
            if entry.name in g.members and g.gid not in additional:
                additional.append(g.gid)
    return ResolvedUser(uid=resolved_uid, gid=gid, additional_gids=additional, home=home)
