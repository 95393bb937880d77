"""IP address management, pure: subnets validated into plans, and addresses picked from their pools.

No I/O here, so the rules can be property-tested on their own. The database adds the one thing a pure
function cannot: a unique key on (subnet, address), so two controllers (or two transactions) that pick
the same free address at the same moment cannot both keep it; the loser picks again
(``services.addresses``).

Rules, as Neutron has them:
- a subnet's CIDR has no host bits set; IPv4 only for now, prefix length 8 to 30;
- the gateway (by default the first host address; none if asked) lies inside the CIDR and is neither
  the network nor the broadcast address;
- allocation pools (by default every host address but the gateway) lie inside the CIDR, never include
  the network address, the broadcast address or the gateway, and do not overlap one another;
- addresses are handed out lowest first from the pools; a chosen fixed address must be inside a pool.

Every error names its field (``field`` is the caller's path to the subnet, e.g. ``subnets[0]``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from atoll.model.errors import InvalidInput

MIN_PREFIX = 8
MAX_PREFIX = 30
"""A /31 or /32 has no room for a gateway and a host; a /7 would be a pool of 33 million addresses."""
MAX_DNS = 5


@dataclass(frozen=True, order=True)
class Pool:
    """An inclusive range of addresses."""

    start: IPv4Address
    end: IPv4Address

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPv4Address) and self.start <= address <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class SubnetPlan:
    cidr: IPv4Network
    gateway: IPv4Address | None
    pools: tuple[Pool, ...]
    dns: tuple[IPv4Address, ...] = ()

    @property
    def capacity(self) -> int:
        return sum(p.size for p in self.pools)

    def in_pools(self, address: IPv4Address) -> bool:
        return any(address in p for p in self.pools)

    def describe_pools(self) -> str:
        return ", ".join(str(p) for p in self.pools)


def _address(text: str, field: str) -> IPv4Address:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidInput(f"{field}: {text!r} is not an IP address") from None
    if not isinstance(address, IPv4Address):
        raise InvalidInput(f"{field}: IPv6 is not supported yet; give an IPv4 address")
    return address


def parse_address(text: str, field: str) -> IPv4Address:
    return _address(text, field)


def parse_cidr(text: str, field: str) -> IPv4Network:
    try:
        loose = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidInput(f"{field}: {text!r} is not a CIDR such as 10.0.0.0/24") from None
    if not isinstance(loose, IPv4Network):
        raise InvalidInput(f"{field}: IPv6 subnets are not supported yet; give an IPv4 CIDR")
    if "/" not in text:
        raise InvalidInput(
            f"{field}: {text!r} has no prefix length; give a CIDR such as {loose.network_address}/24"
        )
    if ipaddress.ip_interface(text.strip()).ip != loose.network_address:
        raise InvalidInput(f"{field}: {text!r} has host bits set; did you mean {loose}?")
    if not MIN_PREFIX <= loose.prefixlen <= MAX_PREFIX:
        raise InvalidInput(
            f"{field}: the prefix length must be {MIN_PREFIX} to {MAX_PREFIX}, not /{loose.prefixlen}"
        )
    return loose


def _check_host(cidr: IPv4Network, address: IPv4Address, field: str, what: str) -> None:
    if address not in cidr:
        raise InvalidInput(f"{field}: {what} {address} is outside the subnet {cidr}")
    if address == cidr.network_address:
        raise InvalidInput(f"{field}: {what} {address} is the network address of {cidr}")
    if address == cidr.broadcast_address:
        raise InvalidInput(f"{field}: {what} {address} is the broadcast address of {cidr}")


def first_host(cidr: IPv4Network) -> IPv4Address:
    return cidr.network_address + 1


def last_host(cidr: IPv4Network) -> IPv4Address:
    return cidr.broadcast_address - 1


def default_pools(cidr: IPv4Network, gateway: IPv4Address | None) -> tuple[Pool, ...]:
    """Every host address of ``cidr`` except the gateway: one range, or two around the gateway."""
    lo, hi = first_host(cidr), last_host(cidr)
    if gateway is None or not lo <= gateway <= hi:
        return (Pool(lo, hi),)
    pools = []
    if gateway > lo:
        pools.append(Pool(lo, gateway - 1))
    if gateway < hi:
        pools.append(Pool(gateway + 1, hi))
    return tuple(pools)


def plan_subnet(
    cidr: str,
    *,
    gateway: str | None = None,
    no_gateway: bool = False,
    pools: Sequence[tuple[str, str]] | None = None,
    dns: Sequence[str] = (),
    field: str = "",
) -> SubnetPlan:
    """Validate a subnet request. ``gateway`` None means the first host address, unless ``no_gateway``."""
    prefix = f"{field}." if field else ""
    net = parse_cidr(cidr, f"{prefix}cidr")
    gw: IPv4Address | None
    if no_gateway:
        if gateway is not None:
            raise InvalidInput(f"{prefix}gateway: conflicts with no_gateway")
        gw = None
    elif gateway is None:
        gw = first_host(net)
    else:
        gw = _address(gateway, f"{prefix}gateway")
        _check_host(net, gw, f"{prefix}gateway", "the gateway")
    if pools is None:
        planned = default_pools(net, gw)
    else:
        planned = _check_pools(net, gw, pools, f"{prefix}allocation_pools")
    servers = tuple(_address(d, f"{prefix}dns_nameservers[{i}]") for i, d in enumerate(dns))
    if len(servers) > MAX_DNS:
        raise InvalidInput(f"{prefix}dns_nameservers: at most {MAX_DNS} servers")
    if len(set(servers)) != len(servers):
        raise InvalidInput(f"{prefix}dns_nameservers: a server is given twice")
    return SubnetPlan(cidr=net, gateway=gw, pools=planned, dns=servers)


def _check_pools(
    net: IPv4Network, gateway: IPv4Address | None, pools: Sequence[tuple[str, str]], field: str
) -> tuple[Pool, ...]:
    if not pools:
        raise InvalidInput(f"{field}: give at least one pool, or leave it out for the whole subnet")
    out: list[Pool] = []
    for i, (start_text, end_text) in enumerate(pools):
        where = f"{field}[{i}]"
        start = _address(start_text, f"{where}.start")
        end = _address(end_text, f"{where}.end")
        _check_host(net, start, f"{where}.start", "the pool start")
        _check_host(net, end, f"{where}.end", "the pool end")
        if start > end:
            raise InvalidInput(f"{where}: the start {start} is after the end {end}")
        pool = Pool(start, end)
        if gateway is not None and gateway in pool:
            raise InvalidInput(f"{where}: the pool {pool} includes the gateway {gateway}")
        for j, other in enumerate(out):
            if pool.start <= other.end and other.start <= pool.end:
                raise InvalidInput(f"{where}: the pool {pool} overlaps {field}[{j}] ({other})")
        out.append(pool)
    return tuple(sorted(out))


def check_fixed(plan: SubnetPlan, address: IPv4Address, field: str) -> None:
    """A chosen address must be one IPAM could have handed out."""
    _check_host(plan.cidr, address, field, "the address")
    if plan.gateway is not None and address == plan.gateway:
        raise InvalidInput(f"{field}: {address} is the gateway of {plan.cidr}")
    if not plan.in_pools(address):
        raise InvalidInput(
            f"{field}: {address} is not inside an allocation pool of {plan.cidr} ({plan.describe_pools()})"
        )


def first_free(plan: SubnetPlan, used: Collection[IPv4Address]) -> IPv4Address | None:
    """The lowest pool address not in ``used``; None when the pools are exhausted.

    Walks the used addresses of each pool in order, so it costs O(u log u) for u used, not the pool size.
    """
    taken = sorted(int(a) for a in used)
    for pool in plan.pools:
        candidate = int(pool.start)
        for u in taken:
            if u < candidate:
                continue
            if u > candidate:
                break
            candidate += 1
        if candidate <= int(pool.end):
            return IPv4Address(candidate)
    return None
