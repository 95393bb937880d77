"""The pure choice of a default subnet."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.model.errors import InvalidInput
from atoll.services.addrpools import DEFAULT_POOLS, AddressPool, parse_pools, pick


def n(text: str) -> IPv4Network:
    return IPv4Network(text)


def test_parse() -> None:
    assert parse_pools(DEFAULT_POOLS) == (AddressPool(n("10.96.0.0/11"), 24),)
    assert parse_pools("172.18.0.0/15:16, 192.168.64.0/18") == (
        AddressPool(n("172.18.0.0/15"), 16),
        AddressPool(n("192.168.64.0/18"), 24),
    )
    for bad in ("", "10.0.0.1/8:24", "10.0.0.0/8:4", "nope", "10.0.0.0/8:x", "fd00::/8:64"):
        with pytest.raises(InvalidInput, match="default address pools"):
            parse_pools(bad)


def test_pick_skips_what_is_taken() -> None:
    pools = parse_pools("10.96.0.0/22:24,192.168.0.0/23:24")
    assert pick(pools, []) == n("10.96.0.0/24")
    assert pick(pools, [n("10.96.0.0/24"), n("10.96.1.128/25")]) == n("10.96.2.0/24")
    assert pick(pools, [n("10.0.0.0/8")]) == n("192.168.0.0/24")  # a host route covering the first range
    assert pick(pools, [n("0.0.0.0/1"), n("128.0.0.0/1")]) is None


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(16, 28)), max_size=20))
def test_pick_never_overlaps(raw: list[tuple[int, int]]) -> None:
    pools = parse_pools("10.96.0.0/16:24")
    taken = [IPv4Network((0x0A600000 + (third << 8), length), strict=False) for third, length in raw]
    got = pick(pools, taken)
    if got is None:
        assert all(any(t.overlaps(b) for t in taken) for b in n("10.96.0.0/16").subnets(new_prefix=24))
    else:
        assert got.prefixlen == 24 and got.subnet_of(n("10.96.0.0/16"))
        assert not any(t.overlaps(got) for t in taken)
        earlier = [b for b in n("10.96.0.0/16").subnets(new_prefix=24) if b < got]
        assert all(any(t.overlaps(b) for t in taken) for b in earlier)  # the first free one
