"""``atoll network``, ``atoll subnet`` and ``atoll port``: tenant networking, Neutron's resources with
docker's conveniences (``network create --subnet --gateway --ip-range``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.humanize import ago, short_id
from atoll.cli.netopts import parse_pool
from atoll.cli.output import for_each, inspect_each, print_table
from atoll.cli.parsing import parse_labels
from atoll.schemas import NetworkCreate, SubnetCreate, SubnetSpec

networks = typer.Typer(help="Manage networks.", no_args_is_help=True)
subnets = typer.Typer(help="Manage the subnets of networks.", no_args_is_help=True)
ports = typer.Typer(help="Show ports (the NICs of instances).", no_args_is_help=True)

Refs = Annotated[list[str], typer.Argument(help="Names or ids.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only ids.")]
Gateway = Annotated[str | None, typer.Option("--gateway", help="Default: the first host address.")]
NoGateway = Annotated[bool, typer.Option("--no-gateway", help="The subnet has no gateway.")]
Pools = Annotated[
    list[str] | None,
    typer.Option("--ip-range", "--pool", help="Allocation pool: START-END or a CIDR; repeatable."),
]
Dns = Annotated[list[str] | None, typer.Option("--dns", help="DNS server of the subnet; repeatable.")]


def _subnet_fields(
    cidr: str, gateway: str | None, no_gateway: bool, pools: list[str] | None, dns: list[str] | None
) -> dict[str, object]:
    fields: dict[str, object] = {"cidr": cidr}
    if gateway is not None:
        fields["gateway"] = gateway
    if no_gateway:
        fields["no_gateway"] = True
    if pools:
        fields["allocation_pools"] = [parse_pool(p, cidr) for p in pools]
    if dns:
        fields["dns_nameservers"] = list(dns)
    return fields


@networks.command("create")
def network_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Network name.")],
    type: Annotated[
        str,
        typer.Option("--type", "--driver", "-d", help="overlay (VXLAN, spans hosts) or bridge (host-local)."),
    ] = "overlay",
    subnet: Annotated[
        str | None,
        typer.Option("--subnet", help="CIDR of its first subnet, or 'auto' (a free default range)."),
    ] = None,
    gateway: Gateway = None,
    no_gateway: NoGateway = False,
    ip_range: Pools = None,
    dns: Dns = None,
    mtu: Annotated[
        int | None,
        typer.Option("--mtu", help="Default: 1500 for bridge, the underlay's minus 50 for overlay."),
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE label.")] = None,
    external: Annotated[
        bool, typer.Option("--external", help="An external network (admin): needs --uplink and --subnet.")
    ] = False,
    uplink: Annotated[
        str | None, typer.Option("--uplink", help="Host interface of an external network.")
    ] = None,
) -> None:
    """Create a network, with a first subnet if --subnet is given."""
    fields: dict[str, object] = {"name": name, "type": "external" if external else type}
    if uplink is not None:
        fields["uplink"] = uplink
    if mtu is not None:
        fields["mtu"] = mtu
    if label:
        fields["labels"] = parse_labels(label)
    if subnet is not None:
        fields["subnets"] = [
            SubnetSpec.model_validate(_subnet_fields(subnet, gateway, no_gateway, ip_range, dns))
        ]
    elif gateway is not None or no_gateway or ip_range or dns:
        raise typer.BadParameter("--gateway, --no-gateway, --ip-range and --dns need --subnet")
    typer.echo(context.api(ctx).create_network(NetworkCreate.model_validate(fields)).id)


@networks.command("ls")
def network_ls(ctx: typer.Context, quiet: Quiet = False) -> None:
    """List networks."""
    items = context.api(ctx).networks()
    if quiet:
        for net in items:
            typer.echo(short_id(net.id))
        return
    now = datetime.now(UTC)
    print_table(
        ["NETWORK ID", "NAME", "TYPE", "SUBNETS", "CREATED"],
        [
            [
                short_id(n.id),
                n.name,
                n.type,
                ",".join(s.cidr for s in n.subnets) or "-",
                ago(n.created_at, now),
            ]
            for n in items
        ],
    )


@networks.command("inspect")
def network_inspect(ctx: typer.Context, refs: Refs) -> None:
    """Show networks as JSON."""
    inspect_each(refs, context.api(ctx).inspect_network)


@networks.command("rm")
def network_rm(ctx: typer.Context, refs: Refs) -> None:
    """Remove networks (and their subnets); refused while instances use them."""
    for_each(refs, context.api(ctx).remove_network)


@subnets.command("create")
def subnet_create(
    ctx: typer.Context,
    network: Annotated[str, typer.Argument(help="Network name or id.")],
    cidr: Annotated[str, typer.Argument(help="IPv4 CIDR, e.g. 10.0.1.0/24, or 'auto'.")],
    name: Annotated[str | None, typer.Option("--name", help="Default: from the CIDR.")] = None,
    gateway: Gateway = None,
    no_gateway: NoGateway = False,
    pool: Pools = None,
    dns: Dns = None,
) -> None:
    """Add a subnet to a network."""
    fields = {"network": network, **_subnet_fields(cidr, gateway, no_gateway, pool, dns)}
    if name is not None:
        fields["name"] = name
    typer.echo(context.api(ctx).create_subnet(SubnetCreate.model_validate(fields)).id)


@subnets.command("ls")
def subnet_ls(
    ctx: typer.Context,
    network: Annotated[str | None, typer.Option("--network", help="Only this network's.")] = None,
    quiet: Quiet = False,
) -> None:
    """List subnets."""
    items = context.api(ctx).subnets(network=network)
    if quiet:
        for sub in items:
            typer.echo(short_id(sub.id))
        return
    print_table(
        ["SUBNET ID", "NAME", "NETWORK", "CIDR", "GATEWAY", "POOLS"],
        [
            [
                short_id(s.id),
                s.name,
                short_id(s.network),
                s.cidr,
                s.gateway or "-",
                ",".join(f"{p.start}-{p.end}" for p in s.allocation_pools),
            ]
            for s in items
        ],
    )


@subnets.command("inspect")
def subnet_inspect(ctx: typer.Context, refs: Refs) -> None:
    """Show subnets as JSON."""
    inspect_each(refs, context.api(ctx).inspect_subnet)


@subnets.command("rm")
def subnet_rm(ctx: typer.Context, refs: Refs) -> None:
    """Remove subnets; refused while addresses of theirs are in use."""
    for_each(refs, context.api(ctx).remove_subnet)


@ports.command("ls")
def port_ls(
    ctx: typer.Context,
    network: Annotated[str | None, typer.Option("--network", help="Only this network's.")] = None,
    instance: Annotated[str | None, typer.Option("--instance", help="Only this instance's.")] = None,
    quiet: Quiet = False,
) -> None:
    """List ports."""
    items = context.api(ctx).ports(network=network, instance=instance)
    if quiet:
        for port in items:
            typer.echo(short_id(port.id))
        return
    print_table(
        ["PORT ID", "NETWORK", "INSTANCE", "DEVICE", "MAC", "IP"],
        [
            [
                short_id(p.id),
                short_id(p.network),
                short_id(p.instance) if p.instance else "-",
                p.device,
                p.mac,
                ",".join(f.ip for f in p.fixed_ips),
            ]
            for p in items
        ],
    )


@ports.command("inspect")
def port_inspect(ctx: typer.Context, refs: Refs) -> None:
    """Show ports as JSON."""
    inspect_each(refs, context.api(ctx).inspect_port)


@networks.command("connect")
def network_connect(
    ctx: typer.Context,
    network: Annotated[str, typer.Argument(help="Network name or id.")],
    instance: Annotated[str, typer.Argument(help="Instance name or id.")],
    ip: Annotated[str | None, typer.Option("--ip", help="A fixed address; default: the next free.")] = None,
    alias: Annotated[
        list[str] | None, typer.Option("--alias", help="Another name of the instance there; repeatable.")
    ] = None,
    mac: Annotated[str | None, typer.Option("--mac", help="A chosen MAC; default: a random one.")] = None,
) -> None:
    """Give an instance (created, running or stopped) a NIC on a network; a running one gets it at once."""
    inst = context.api(ctx).connect_network(instance, network, ip=ip, aliases=alias or [], mac=mac)
    nic = inst.networks[-1]  # the new NIC comes last
    typer.echo(f"{nic.device} {nic.ip}")


@networks.command("disconnect")
def network_disconnect(
    ctx: typer.Context,
    network: Annotated[str, typer.Argument(help="Network name or id.")],
    instance: Annotated[str, typer.Argument(help="Instance name or id.")],
) -> None:
    """Remove an instance's NIC on a network and release its address."""
    context.api(ctx).disconnect_network(instance, network)
