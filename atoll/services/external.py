"""External networks: flat networks whose bridge enslaves a host interface (the uplink), for routers'
gateways and floating IPs.

Project rule: only the administrator's project (``default``) creates them, and they are shared: every
project may name one (by name or id) as a router's gateway or as the source of floating IPs, while it
stays owned, listed and removable by ``default`` alone. No instance gets a port on one (see
``routeruse.refuse_external``), so projects meet on it only as routers and floating IPs, and each
router lets the outside in only through floating IPs (see agent/net/routernat.py).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput, NotFound
from atoll.model.network import NetworkType
from atoll.schemas import NetworkCreate
from atoll.services.ids import is_hex
from atoll.store.models import DEFAULT_PROJECT, NetworkRow

ADMIN_PROJECT = DEFAULT_PROJECT
_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
MIN_PREFIX_REF = 4


def check_external(s: Session, *, project: str, request: NetworkCreate) -> str:
    """Validate an external network's request; returns its uplink."""
    if project != ADMIN_PROJECT:
        raise InvalidInput(
            f"type: external networks are made by the administrator (project {ADMIN_PROJECT}) "
            "and shared with every project"
        )
    uplink = request.uplink or ""
    if not uplink:
        raise InvalidInput("uplink: an external network needs the host interface its bridge enslaves")
    if not _IFNAME.match(uplink) or uplink in (".", ".."):
        raise InvalidInput(f"uplink: {uplink!r} is not an interface name (1-15 characters, no spaces or /)")
    taken = s.scalar(select(NetworkRow.name).where(NetworkRow.uplink == uplink))
    if taken is not None:
        raise Conflict(f"uplink: {uplink} is already the uplink of network {taken}")
    if not request.subnets:
        raise InvalidInput(
            "subnets: an external network needs a subnet (its addresses go to gateways and floating IPs)"
        )
    return uplink


def resolve_external(s: Session, project: str, ref: str, field: str) -> NetworkRow:
    """An external network by name, id or unique id prefix, seen from any project. A network of the
    caller's own project that is not external is named as such; anything else is "not found"."""
    own = s.scalar(select(NetworkRow).where(NetworkRow.project == project, NetworkRow.name == ref))
    if own is not None and own.type != NetworkType.EXTERNAL:
        raise InvalidInput(f"{field}: network {own.name} is not an external network")
    external = select(NetworkRow).where(NetworkRow.type == NetworkType.EXTERNAL.value)
    row = own or s.scalar(external.where(NetworkRow.name == ref).limit(1)) or s.get(NetworkRow, ref)
    if row is None and len(ref) >= MIN_PREFIX_REF and is_hex(ref):
        rows = list(s.scalars(external.where(NetworkRow.id.startswith(ref)).limit(2)))
        if len(rows) > 1:
            raise Conflict(f"{field}: network id prefix {ref!r} is ambiguous")
        row = rows[0] if rows else None
    if row is None or (row.type != NetworkType.EXTERNAL and row.project != project):
        raise NotFound(f"{field}: external network {ref!r} not found")
    if row.type != NetworkType.EXTERNAL:
        raise InvalidInput(f"{field}: network {row.name} is not an external network")
    return row
