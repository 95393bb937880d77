"""The resolver's own answers (pure: messages in, messages out)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.reversename

from atoll.agent.net.dnsanswer import NameView, answer, build_view, to_wire, udp_limit
from atoll.model.dnsrecords import NameRecord, NetworkNames

FRONT = NetworkNames(
    "front",
    records=[
        NameRecord("web", "10.0.0.2", "i1", primary=True),
        NameRecord("www", "10.0.0.2", "i1"),
        NameRecord("db", "10.0.0.3", "i2", primary=True),
    ],
    cidrs=["10.0.0.0/24"],
)
BACK = NetworkNames(
    "back",
    records=[
        NameRecord("web", "10.1.0.2", "i1", primary=True),
        NameRecord("cache", "10.1.0.9", "i3", primary=True),
    ],
    cidrs=["10.1.0.0/24"],
)


def ask(view: NameView, name: str, rdtype: str = "A") -> dns.message.Message | None:
    return answer(dns.message.make_query(name, rdtype), view)


def addresses(response: dns.message.Message | None) -> list[str]:
    assert response is not None and response.rcode() == dns.rcode.NOERROR
    return [rd.to_text() for rrset in response.answer for rd in rrset]


def test_names_answer_the_shared_networks_addresses() -> None:
    view = build_view([FRONT])
    response = ask(view, "web")
    assert addresses(response) == ["10.0.0.2"]
    assert response is not None and response.flags & dns.flags.AA
    assert response.answer[0].ttl == 600
    assert addresses(ask(view, "WWW.")) == ["10.0.0.2"]  # case does not matter, nor the final dot
    assert addresses(ask(view, "db")) == ["10.0.0.3"]
    # Not on a shared network: unknown.
    response = ask(view, "cache")
    assert response is not None and response.rcode() == dns.rcode.NXDOMAIN


def test_a_name_on_two_shared_networks_answers_both() -> None:
    view = build_view([FRONT, BACK])
    assert sorted(addresses(ask(view, "web"))) == ["10.0.0.2", "10.1.0.2"]
    assert addresses(ask(view, "cache")) == ["10.1.0.9"]


def test_other_types_of_a_known_name_are_empty_not_missing() -> None:
    view = build_view([FRONT])
    for rdtype in ("AAAA", "MX", "TXT"):
        assert addresses(ask(view, "web", rdtype)) == []


def test_reverse_lookups() -> None:
    view = build_view([FRONT, BACK])
    response = ask(view, dns.reversename.from_address("10.0.0.2").to_text(), "PTR")
    assert addresses(response) == ["web."]  # the instance's name, not its aliases
    response = ask(view, dns.reversename.from_address("10.0.0.77").to_text(), "PTR")
    assert (
        response is not None and response.rcode() == dns.rcode.NXDOMAIN
    )  # a tenant address: never forwarded
    assert ask(view, dns.reversename.from_address("192.0.2.1").to_text(), "PTR") is None  # forwarded
    assert ask(view, "10.in-addr.arpa.", "PTR") is None


def test_what_is_forwarded_and_what_is_not() -> None:
    view = build_view([FRONT])
    assert ask(view, "example.com") is None
    assert ask(view, "web.example.com") is None
    response = ask(view, "nosuchname")  # a single label is never sent upstream
    assert response is not None and response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.RA


def test_odd_queries() -> None:
    view = build_view([FRONT])
    query = dns.message.make_query("web", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    response = answer(query, view)
    assert response is not None and response.rcode() == dns.rcode.NOTIMP
    query = dns.message.make_query("web", "A", rdclass="CH")
    assert answer(query, view) is None


def test_big_answers_are_truncated_for_udp() -> None:
    many = NetworkNames(
        "n", records=[NameRecord("db", f"10.0.{i // 250}.{i % 250 + 1}", f"i{i}") for i in range(100)]
    )
    view = build_view([many])
    query = dns.message.make_query("db", "A", use_edns=False)
    response = answer(query, view)
    assert response is not None
    wire = to_wire(response, udp_limit(query))
    assert len(wire) <= 512
    back = dns.message.from_wire(wire)
    assert back.flags & dns.flags.TC and not back.answer
    response = answer(query, view)
    assert response is not None
    assert len(dns.message.from_wire(to_wire(response, 65535)).answer[0]) == 100  # over TCP: all of them
    assert udp_limit(dns.message.make_query("db", "A", use_edns=0, payload=1232)) == 1232
