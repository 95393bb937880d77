"""What the resolver answers on its own, and what it leaves to the upstream servers. Pure: no sockets.

An instance's ``NameView`` is the union of the networks it has a port on (see ``atoll.model.dnsrecords``).
The rules, after Docker's embedded DNS:

- A name of the view: ``A`` answers every address it has on the shared networks (a name on two shared
  networks answers both); every other type (``AAAA`` above all) answers NOERROR with no records, so a
  client that asks for both families is not told that the name does not exist.
- ``PTR`` for an address of the view answers the instance's name. Any other address inside one of the
  view's subnets is NXDOMAIN here: tenant addresses mean nothing upstream, and must not leak there.
- A single-label name that is not in the view is NXDOMAIN, never forwarded (as dnsmasq's
  ``domain-needed``): no upstream can know it, and tenants' short names stay inside the cloud.
- Everything else (``example.com``) is forwarded: ``answer`` returns None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from atoll.model.dnsrecords import NetworkNames

TTL = 600
"""Docker's; names change rarely, and a removed instance's address is not reused before it is freed."""


@dataclass(frozen=True)
class NetworkIndex:
    """One network's names, indexed once per refresh and shared by the views of all its instances."""

    addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """name -> addresses on this network."""
    names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """address -> instance names, for reverse lookups."""
    subnets: tuple[IPv4Network, ...] = ()


def index_network(network: NetworkNames) -> NetworkIndex:
    addresses: dict[str, list[str]] = {}
    names: dict[str, list[str]] = {}
    for record in network.records:
        have = addresses.setdefault(record.name, [])
        if record.address not in have:
            have.append(record.address)
        if record.primary:
            reverse = names.setdefault(record.address, [])
            if record.name not in reverse:
                reverse.append(record.name)
    return NetworkIndex(
        addresses={k: tuple(v) for k, v in addresses.items()},
        names={k: tuple(v) for k, v in names.items()},
        subnets=tuple(IPv4Network(cidr) for cidr in network.cidrs),
    )


@dataclass(frozen=True)
class NameView:
    """The names one instance can resolve: those of its networks, in the order of its ports."""

    networks: tuple[NetworkIndex, ...] = ()

    def addresses(self, name: str) -> list[str] | None:
        """None if no shared network knows ``name``."""
        found: list[str] | None = None
        for network in self.networks:
            for address in network.addresses.get(name, ()):
                found = found if found is not None else []
                if address not in found:
                    found.append(address)
        return found

    def names(self, address: str) -> list[str]:
        out: list[str] = []
        for network in self.networks:
            out += [n for n in network.names.get(address, ()) if n not in out]
        return out

    def in_subnets(self, address: IPv4Address) -> bool:
        return any(address in subnet for network in self.networks for subnet in network.subnets)


def build_view(networks: Iterable[NetworkNames]) -> NameView:
    return NameView(tuple(index_network(n) for n in networks))


def _key(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    response.flags |= dns.flags.RA
    return response


def _reverse(query: dns.message.Message, qname: dns.name.Name, view: NameView) -> dns.message.Message | None:
    try:
        address = ip_address(dns.reversename.to_address(qname))
    except (dns.exception.SyntaxError, ValueError):
        return None  # a partial name (a zone, not one address): not ours to answer
    if not isinstance(address, IPv4Address):
        return None
    names = view.names(str(address))
    if names:
        response = _response(query, dns.rcode.NOERROR)
        response.flags |= dns.flags.AA
        response.answer.append(
            dns.rrset.from_text_list(
                qname, TTL, dns.rdataclass.IN, dns.rdatatype.PTR, [f"{n}." for n in names]
            )
        )
        return response
    if view.in_subnets(address):
        return _response(query, dns.rcode.NXDOMAIN)
    return None


def answer(query: dns.message.Message, view: NameView) -> dns.message.Message | None:
    """The response to ``query``, or None when it is to be forwarded upstream."""
    if query.opcode() != dns.opcode.QUERY:
        return _response(query, dns.rcode.NOTIMP)
    if len(query.question) != 1:
        return _response(query, dns.rcode.FORMERR)
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN:
        return None
    qname = question.name
    if question.rdtype == dns.rdatatype.PTR and qname.is_subdomain(dns.reversename.ipv4_reverse_domain):
        return _reverse(query, qname, view)
    key = _key(qname)
    found = view.addresses(key)
    if found is not None:
        response = _response(query, dns.rcode.NOERROR)
        response.flags |= dns.flags.AA
        if question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            response.answer.append(
                dns.rrset.from_text_list(qname, TTL, dns.rdataclass.IN, dns.rdatatype.A, found)
            )
        return response
    if key and "." not in key:
        return _response(query, dns.rcode.NXDOMAIN)
    return None


def servfail(query: dns.message.Message) -> dns.message.Message:
    """For a query that had to be forwarded and got no answer (no upstream, or none replied)."""
    return _response(query, dns.rcode.SERVFAIL)


def to_wire(response: dns.message.Message, max_size: int) -> bytes:
    """The response within ``max_size`` bytes: if it does not fit, truncated (TC set, no answers), so
    the client asks again over TCP."""
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        response.answer = []
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=max_size)


def udp_limit(query: dns.message.Message) -> int:
    """How large a UDP response the client accepts: its EDNS buffer size, else the classic 512."""
    return max(512, query.payload) if query.edns >= 0 else 512
