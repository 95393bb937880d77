"""Parsing of the networking options of the CLI. Pure functions; they raise ``typer.BadParameter``.

The server validates addresses; these only split what the user typed into the request's fields, so
that every error about an address still comes from one place, naming the field.
"""

from __future__ import annotations

import ipaddress

import typer

from atoll.schemas import AllocationPool, InstanceNetwork

NETWORK_KEYS = ("name", "ip", "alias")


def parse_pool(text: str, subnet: str | None = None) -> AllocationPool:
    """``START-END``, or a CIDR inside the subnet (docker's ``--ip-range``), which stands for its host
    addresses: the subnet's network and broadcast addresses are left out."""
    start, sep, end = text.partition("-")
    if sep:
        return AllocationPool(start=start.strip(), end=end.strip())
    try:
        rng = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither START-END nor a CIDR") from None
    first, last = rng.network_address, rng.broadcast_address
    if subnet is not None:
        try:
            outer = ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            outer = None
        if outer is not None and outer.version == rng.version:
            first = max(first, outer.network_address + 1)
            last = min(last, outer.broadcast_address - 1)
    return AllocationPool(start=str(first), end=str(last))


def parse_network(text: str) -> InstanceNetwork:
    """``NET``, or docker's long form ``name=NET[,ip=ADDR][,alias=NAME]...``."""
    if "=" not in text:
        return InstanceNetwork(network=text)
    fields: dict[str, str] = {}
    aliases: list[str] = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in NETWORK_KEYS:
            raise typer.BadParameter(f"invalid network option {part!r}: use name=NET,ip=ADDR,alias=NAME")
        if key == "alias":
            aliases.append(value)
        else:
            fields[key] = value
    if "name" not in fields:
        raise typer.BadParameter(f"{text!r}: name=NET is missing")
    return InstanceNetwork(network=fields["name"], ip=fields.get("ip"), aliases=aliases)


def instance_networks(
    networks: list[str], ip: str | None = None, aliases: list[str] | None = None
) -> list[InstanceNetwork]:
    """``--network`` options, with docker's ``--ip`` and ``--network-alias`` applied to the first one."""
    out = [parse_network(n) for n in networks]
    if (ip or aliases) and not out:
        raise typer.BadParameter("--ip and --network-alias need a --network")
    if out:
        first = out[0]
        update: dict[str, object] = {}
        if ip:
            if first.ip:
                raise typer.BadParameter("the address is given twice (--ip and ip=)")
            update["ip"] = ip
        if aliases:
            update["aliases"] = [*first.aliases, *aliases]
        out[0] = first.model_copy(update=update)
    return out
