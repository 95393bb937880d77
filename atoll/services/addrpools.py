"""Default address ranges: where a subnet asked for as ``auto`` gets its CIDR. Pure.

The ranges are a setting (``ATOLL_DEFAULT_ADDRESS_POOLS``: ``CIDR:SIZE,...``, e.g. ``10.96.0.0/11:24``,
like Docker's ``default-address-pools``). A new subnet is the first block of SIZE bits, in the order the
ranges are given, that overlaps nothing taken: the networks the hosts themselves are on (so tenant
networks never shadow them) and the project's own subnets (so an instance on two networks of its
project never has two routes to one prefix).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network

from atoll.model.errors import InvalidInput

AUTO = "auto"
DEFAULT_POOLS = "10.96.0.0/11:24"
"""8,192 /24 networks in a block that home and office networks (10.0.x, 10.1.x, 192.168.x) rarely use."""


@dataclass(frozen=True)
class AddressPool:
    base: IPv4Network
    size: int
    """The prefix length of each subnet cut from ``base``."""


def parse_pools(text: str, field: str = "default address pools") -> tuple[AddressPool, ...]:
    pools = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        cidr, _, size = item.partition(":")
        try:
            base = ip_network(cidr, strict=True)
            length = int(size) if size else 24
        except ValueError:
            raise InvalidInput(f"{field}: {item!r} is not CIDR:SIZE such as 10.96.0.0/11:24") from None
        if not isinstance(base, IPv4Network) or not base.prefixlen <= length <= 30:
            raise InvalidInput(f"{field}: {item!r}: an IPv4 CIDR, and a SIZE from its prefix length to 30")
        pools.append(AddressPool(base, length))
    if not pools:
        raise InvalidInput(f"{field}: no range given")
    return tuple(pools)


def pick(pools: Sequence[AddressPool], taken: Iterable[IPv4Network]) -> IPv4Network | None:
    """The first block of the pools that overlaps nothing in ``taken``; None if every block does."""
    busy = sorted(set(taken), key=lambda n: (int(n.network_address), n.prefixlen))
    for pool in pools:
        clashing = [n for n in busy if n.overlaps(pool.base)]
        candidate = int(pool.base.network_address)
        step = 1 << (32 - pool.size)
        end = int(pool.base.broadcast_address)
        while candidate + step - 1 <= end:
            block = IPv4Network((candidate, pool.size))
            hit = next((n for n in clashing if n.overlaps(block)), None)
            if hit is None:
                return block
            # Skip past the clashing network in one go (it may span many blocks).
            past = int(hit.broadcast_address) + 1
            candidate = max(candidate + step, (past + step - 1) // step * step)
    return None
