"""IPAM, pure: subnet validation and address selection, with properties checked by hypothesis."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.model.errors import InvalidInput
from atoll.services import ipam
from atoll.services.ipam import Pool, SubnetPlan


def test_defaults() -> None:
    plan = ipam.plan_subnet("10.0.0.0/24")
    assert plan.cidr == IPv4Network("10.0.0.0/24")
    assert plan.gateway == IPv4Address("10.0.0.1")
    assert plan.pools == (Pool(IPv4Address("10.0.0.2"), IPv4Address("10.0.0.254")),)
    assert plan.capacity == 253


def test_gateway_in_the_middle_splits_the_default_pool() -> None:
    plan = ipam.plan_subnet("192.168.5.0/28", gateway="192.168.5.7", dns=["9.9.9.9"])
    assert [str(p) for p in plan.pools] == ["192.168.5.1-192.168.5.6", "192.168.5.8-192.168.5.14"]
    assert plan.dns == (IPv4Address("9.9.9.9"),)


def test_no_gateway() -> None:
    plan = ipam.plan_subnet("10.0.0.0/30", no_gateway=True)
    assert plan.gateway is None
    assert [str(p) for p in plan.pools] == ["10.0.0.1-10.0.0.2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cidr": "10.0.0.0/33"}, "cidr: '10.0.0.0/33' is not a CIDR"),
        ({"cidr": "banana"}, "cidr: 'banana' is not a CIDR"),
        ({"cidr": "10.0.0.5/24"}, "cidr: '10.0.0.5/24' has host bits set; did you mean 10.0.0.0/24?"),
        ({"cidr": "10.0.0.0"}, "cidr: '10.0.0.0' has no prefix length"),
        ({"cidr": "10.0.0.0/31"}, "cidr: the prefix length must be 8 to 30, not /31"),
        ({"cidr": "fd00::/64"}, "cidr: IPv6 subnets are not supported yet"),
        (
            {"cidr": "10.0.0.0/24", "gateway": "10.0.1.1"},
            "gateway: the gateway 10.0.1.1 is outside the subnet",
        ),
        (
            {"cidr": "10.0.0.0/24", "gateway": "10.0.0.0"},
            "gateway: the gateway 10.0.0.0 is the network address",
        ),
        (
            {"cidr": "10.0.0.0/24", "gateway": "10.0.0.255"},
            "gateway: the gateway 10.0.0.255 is the broadcast",
        ),
        ({"cidr": "10.0.0.0/24", "gateway": "x"}, "gateway: 'x' is not an IP address"),
        (
            {"cidr": "10.0.0.0/24", "gateway": "10.0.0.1", "no_gateway": True},
            "gateway: conflicts with no_gateway",
        ),
        ({"cidr": "10.0.0.0/24", "pools": []}, "allocation_pools: give at least one pool"),
        (
            {"cidr": "10.0.0.0/24", "pools": [("10.0.0.10", "10.0.1.5")]},
            "allocation_pools[0].end: the pool end 10.0.1.5 is outside the subnet",
        ),
        (
            {"cidr": "10.0.0.0/24", "pools": [("10.0.0.20", "10.0.0.10")]},
            "allocation_pools[0]: the start 10.0.0.20 is after the end 10.0.0.10",
        ),
        (
            {"cidr": "10.0.0.0/24", "pools": [("10.0.0.1", "10.0.0.10")]},
            "allocation_pools[0]: the pool 10.0.0.1-10.0.0.10 includes the gateway 10.0.0.1",
        ),
        (
            {"cidr": "10.0.0.0/24", "pools": [("10.0.0.10", "10.0.0.20"), ("10.0.0.20", "10.0.0.30")]},
            "allocation_pools[1]: the pool 10.0.0.20-10.0.0.30 overlaps subnets[2].allocation_pools[0]",
        ),
        ({"cidr": "10.0.0.0/24", "dns": ["1.1.1.1", "x"]}, "dns_nameservers[1]: 'x' is not an IP address"),
        ({"cidr": "10.0.0.0/24", "dns": ["1.1.1.1", "1.1.1.1"]}, "dns_nameservers: a server is given twice"),
    ],
)
def test_bad_subnets_name_the_field(kwargs: dict[str, object], message: str) -> None:
    cidr = str(kwargs.pop("cidr"))
    with pytest.raises(InvalidInput) as err:
        ipam.plan_subnet(cidr, field="subnets[2]", **kwargs)  # type: ignore[arg-type]
    assert err.value.message.startswith(f"subnets[2].{message}"), err.value.message


def test_fixed_addresses() -> None:
    plan = ipam.plan_subnet("10.0.0.0/24", pools=[("10.0.0.100", "10.0.0.199")])
    ipam.check_fixed(plan, IPv4Address("10.0.0.150"), "ip")
    for address, why in [
        ("10.0.0.1", "is the gateway"),
        ("10.0.0.50", "is not inside an allocation pool of 10.0.0.0/24 (10.0.0.100-10.0.0.199)"),
        ("10.0.0.255", "is the broadcast address"),
        ("10.0.0.0", "is the network address"),
        ("10.0.1.7", "is outside the subnet"),
    ]:
        with pytest.raises(InvalidInput, match=re.escape(why)):
            ipam.check_fixed(plan, IPv4Address(address), "ip")


def test_first_free_is_the_lowest_free() -> None:
    plan = ipam.plan_subnet("10.0.0.0/29")  # hosts .1-.6, gateway .1
    used = {IPv4Address("10.0.0.2"), IPv4Address("10.0.0.4")}
    assert ipam.first_free(plan, used) == IPv4Address("10.0.0.3")
    assert ipam.first_free(plan, used | {IPv4Address(f"10.0.0.{i}") for i in (3, 5, 6)}) is None


@st.composite
def plans(draw: st.DrawFn) -> SubnetPlan:
    prefix = draw(st.integers(min_value=24, max_value=30))
    base = draw(st.integers(min_value=0, max_value=(1 << (32 - prefix)) - 1)) << (32 - prefix)
    net = IPv4Network((0x0A000000 | (base & 0x00FFFFFF), prefix))
    hosts = list(range(int(net.network_address) + 1, int(net.broadcast_address)))
    gateway = draw(st.none() | st.sampled_from(hosts))
    free = [h for h in hosts if gateway is None or h != gateway]
    cuts = sorted(draw(st.lists(st.sampled_from(free), min_size=0, max_size=6, unique=True)))
    pools: list[tuple[str, str]] = []
    for start, end in zip(cuts[::2], cuts[1::2], strict=False):
        if gateway is None or not start <= gateway <= end:
            pools.append((str(IPv4Address(start)), str(IPv4Address(end))))
    return ipam.plan_subnet(
        str(net),
        gateway=str(IPv4Address(gateway)) if gateway is not None else None,
        no_gateway=gateway is None,
        pools=pools or None,
    )


@settings(max_examples=200, deadline=None)
@given(plan=plans(), data=st.data())
def test_allocation_properties(plan: SubnetPlan, data: st.DataObject) -> None:
    """Allocating until exhaustion hands out every pool address exactly once and nothing else; a
    released address can be allocated again."""
    used: set[IPv4Address] = set()
    while (address := ipam.first_free(plan, used)) is not None:
        assert address not in used
        assert plan.in_pools(address)
        assert address not in (plan.cidr.network_address, plan.cidr.broadcast_address, plan.gateway)
        ipam.check_fixed(plan, address, "ip")
        used.add(address)
    assert len(used) == plan.capacity
    released = data.draw(st.sampled_from(sorted(used)))
    used.discard(released)
    assert ipam.first_free(plan, used) == released


@settings(max_examples=200, deadline=None)
@given(plan=plans(), picks=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40))
def test_fixed_and_automatic_addresses_never_collide(plan: SubnetPlan, picks: list[int]) -> None:
    """Interleaving chosen (fixed) addresses with automatic ones never gives an address twice."""
    pool_addresses = [IPv4Address(a) for p in plan.pools for a in range(int(p.start), int(p.end) + 1)]
    used: set[IPv4Address] = set()
    for pick in picks:
        if pick % 2:
            chosen = pool_addresses[pick % len(pool_addresses)]
            if chosen in used:
                continue  # the service refuses a taken address
            used.add(chosen)
        else:
            address = ipam.first_free(plan, used)
            if address is None:
                assert len(used) == plan.capacity
                continue
            assert address not in used
            used.add(address)
    assert used <= set(pool_addresses)
