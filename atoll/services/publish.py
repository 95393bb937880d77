"""Port publishing (Docker's ``-p``): reserving host ports for an instance when it is created.

The reservation is a row keyed by (host, protocol, host port), written in the transaction that creates
the instance, so two instances on one host never hold the same port; it goes with the instance. A
requested port that is taken is a 409 naming it. Without a host port, a free one is drawn at random from
Docker's range (32768-60999, Linux's default ephemeral range). The host also refuses a port that one of
its own processes listens on (see ``atoll.agent.net.publish``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from ipaddress import IPv4Address

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll.model.errors import Conflict, InvalidInput
from atoll.model.publish import PROTOCOLS, PublishedPort
from atoll.schemas import InstanceCreate, PublishRequest
from atoll.services.netports import AllocationRace
from atoll.store.secgroups import PublishedPortRow

RANDOM_RANGE = (32768, 60999)
MAX_PUBLISHED = 256


def _host_ip(text: str | None, field: str) -> str:
    if text is None or text.strip() in ("", "0.0.0.0"):
        return ""
    try:
        return str(IPv4Address(text.strip()))
    except ValueError:
        raise InvalidInput(f"{field}.host_ip: {text!r} is not an IPv4 address") from None


def _used(s: Session, host_id: str) -> dict[tuple[str, int], str]:
    query = select(PublishedPortRow).where(PublishedPortRow.host_id == host_id)
    return {(r.protocol, r.host_port): r.instance_id for r in s.scalars(query)}


def allocate(
    s: Session, *, host_id: str, instance_id: str, requests: Sequence[PublishRequest]
) -> list[PublishedPort]:
    """Reserve the host ports of a new instance (its row is already in ``s``). Raises InvalidInput or
    Conflict naming ``publish[i]...``, or AllocationRace."""
    if len(requests) > MAX_PUBLISHED:
        raise InvalidInput(f"publish: at most {MAX_PUBLISHED} published ports per instance")
    used = _used(s, host_id)
    out: list[PublishedPort] = []
    for i, request in enumerate(requests):
        field = f"publish[{i}]"
        protocol = request.protocol.lower()
        if protocol not in PROTOCOLS:
            raise InvalidInput(f"{field}.protocol: {request.protocol!r} is not tcp or udp")
        host_ip = _host_ip(request.host_ip, field)
        port = request.host_port or 0
        if port:
            if not 1 <= port <= 65535:
                raise InvalidInput(f"{field}.host_port: {port} is not a port (1-65535)")
            holder = used.get((protocol, port))
            if holder is not None:
                whom = "another port of this instance" if holder == instance_id else f"instance {holder[:12]}"
                raise Conflict(f"{field}.host_port: {port}/{protocol} is already published by {whom}")
        else:
            port = _random_port(protocol, used, field)
        used[(protocol, port)] = instance_id
        s.add(
            PublishedPortRow(
                host_id=host_id,
                protocol=protocol,
                host_port=port,
                instance_id=instance_id,
                host_ip=host_ip,
                container_port=request.container_port,
            )
        )
        out.append(
            PublishedPort(
                protocol=protocol, host_port=port, container_port=request.container_port, host_ip=host_ip
            )
        )
    try:
        s.flush()
    except IntegrityError as e:
        raise AllocationRace("publish: a host port was taken meanwhile") from e
    return out


def _random_port(protocol: str, used: dict[tuple[str, int], str], field: str) -> int:
    low, high = RANDOM_RANGE
    for _ in range(64):
        port = random.randint(low, high)
        if (protocol, port) not in used:
            return port
    free = [p for p in range(low, high + 1) if (protocol, p) not in used]
    if not free:
        raise Conflict(f"{field}.host_port: no free {protocol} port left in {low}-{high}")
    return random.choice(free)


def requests_of(request: InstanceCreate, exposed: Sequence[str]) -> list[PublishRequest]:
    """The ports to publish: those asked for, and with ``publish_all`` (Docker's ``-P``) every port the
    image exposes (``80/tcp``) that is not published already, each on a random host port."""
    out = list(request.publish)
    if request.publish_all:
        have = {(p.container_port, p.protocol.lower()) for p in out}
        for item in exposed:
            number, _, protocol = item.partition("/")
            if not number.isdigit():
                continue  # not a port (image configs are not validated); Docker skips it too
            key = (int(number), (protocol or "tcp").lower())
            if key not in have and key[1] in PROTOCOLS and 1 <= key[0] <= 65535:
                out.append(PublishRequest(container_port=key[0], protocol=key[1]))
                have.add(key)
    return out
