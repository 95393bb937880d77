"""``atoll router`` and ``atoll fip``: routers joining subnets, their external gateway (SNAT) and static
routes, and floating IPs, Neutron's way (``router add-interface R SUBNET``, ``fip associate FIP PORT``)."""

from __future__ import annotations

from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.humanize import short_id
from atoll.cli.output import for_each, inspect_each, print_table
from atoll.schemas_routing import FloatingIpCreate, Router, RouterCreate, RouterUpdate, StaticRouteWire

routers = typer.Typer(help="Manage routers.", no_args_is_help=True)
fips = typer.Typer(help="Manage floating IPs.", no_args_is_help=True)

Refs = Annotated[list[str], typer.Argument(help="Names or ids.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only ids.")]
Routes = Annotated[
    list[str] | None,
    typer.Option("--route", help="Static route DEST=NEXTHOP, e.g. 10.9.0.0/16=10.1.0.5; repeatable."),
]
Gateway = Annotated[str | None, typer.Option("--external-gateway", help="External network name or id.")]


def parse_routes(values: list[str]) -> list[StaticRouteWire]:
    out = []
    for value in values:
        dest, sep, nexthop = value.partition("=")
        if not sep or not dest or not nexthop:
            raise typer.BadParameter(
                f"{value!r}: give DEST=NEXTHOP, e.g. 10.9.0.0/16=10.1.0.5", param_hint="--route"
            )
        out.append(StaticRouteWire(destination=dest, nexthop=nexthop))
    return out


@routers.command("create")
def router_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Router name.")],
    external_gateway: Gateway = None,
    snat: Annotated[
        bool, typer.Option("--snat/--no-snat", help="Masquerade what leaves by the gateway.")
    ] = True,
    route: Routes = None,
) -> None:
    """Create a router (a namespace on the host that routes between the subnets it joins)."""
    fields: dict[str, object] = {"name": name, "snat": snat}
    if external_gateway:
        fields["external_gateway"] = external_gateway
    if route:
        fields["routes"] = parse_routes(route)
    typer.echo(context.api(ctx).create_router(RouterCreate.model_validate(fields)).id)


@routers.command("set")
def router_set(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Router name or id.")],
    external_gateway: Gateway = None,
    no_external_gateway: Annotated[
        bool, typer.Option("--no-external-gateway", help="Remove the gateway.")
    ] = False,
    snat: Annotated[bool | None, typer.Option("--snat/--no-snat", help="Masquerade by the gateway.")] = None,
    route: Routes = None,
    no_routes: Annotated[bool, typer.Option("--no-routes", help="Remove every static route.")] = False,
) -> None:
    """Change a router's external gateway, SNAT or static routes (--route replaces them all)."""
    fields: dict[str, object] = {}
    if external_gateway and no_external_gateway:
        raise typer.BadParameter("give --external-gateway or --no-external-gateway, not both")
    if external_gateway or no_external_gateway:
        fields["external_gateway"] = external_gateway
    if snat is not None:
        fields["snat"] = snat
    if route or no_routes:
        fields["routes"] = parse_routes(route or [])
    typer.echo(context.api(ctx).update_router(ref, RouterUpdate.model_validate(fields)).id)


@routers.command("add-interface")
def router_add_interface(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Router name or id.")],
    subnet: Annotated[str, typer.Argument(help="Subnet name or id; the router takes its gateway address.")],
) -> None:
    """Join a subnet to a router."""
    typer.echo(context.api(ctx).add_router_interface(ref, subnet).id)


@routers.command("remove-interface")
def router_remove_interface(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Router name or id.")],
    subnet: Annotated[str, typer.Argument(help="Subnet name or id.")],
) -> None:
    """Take a router off a subnet."""
    typer.echo(context.api(ctx).remove_router_interface(ref, subnet).id)


def _gateway(r: Router) -> str:
    gw = r.external_gateway
    if gw is None:
        return "-"
    return f"{gw.ip} ({short_id(gw.network)}{', snat' if gw.snat else ''})"


@routers.command("ls")
def router_ls(ctx: typer.Context, quiet: Quiet = False) -> None:
    """List routers."""
    items = context.api(ctx).routers()
    if quiet:
        for r in items:
            typer.echo(short_id(r.id))
        return
    print_table(
        ["ROUTER ID", "NAME", "INTERFACES", "EXTERNAL GATEWAY", "ROUTES"],
        [
            [
                short_id(r.id),
                r.name,
                ",".join(i.ip for i in r.interfaces) or "-",
                _gateway(r),
                ",".join(f"{x.destination}={x.nexthop}" for x in r.routes) or "-",
            ]
            for r in items
        ],
    )


@routers.command("show")
def router_show(ctx: typer.Context, refs: Refs) -> None:
    """Show routers as JSON."""
    inspect_each(refs, context.api(ctx).inspect_router)


@routers.command("rm")
def router_rm(ctx: typer.Context, refs: Refs) -> None:
    """Remove routers (refused while they have interfaces; the gateway goes with them)."""
    for_each(refs, context.api(ctx).remove_router)


@fips.command("create")
def fip_create(
    ctx: typer.Context,
    network: Annotated[str, typer.Argument(help="External network name or id.")],
    ip: Annotated[
        str | None, typer.Option("--ip", help="A chosen address; default: the next free one.")
    ] = None,
    port: Annotated[
        str | None, typer.Option("--port", help="Associate at once: port id or instance.")
    ] = None,
) -> None:
    """Take a floating IP from an external network; prints its address."""
    fields: dict[str, object] = {"network": network}
    if ip:
        fields["ip"] = ip
    if port:
        fields["port"] = port
    typer.echo(context.api(ctx).create_floating_ip(FloatingIpCreate.model_validate(fields)).ip)


@fips.command("associate")
def fip_associate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Floating IP: address or id.")],
    port: Annotated[str, typer.Argument(help="Port id, or instance name or id.")],
) -> None:
    """Map a floating IP to a port (again, to move it)."""
    fip = context.api(ctx).associate_floating_ip(ref, port)
    typer.echo(f"{fip.ip} -> {fip.fixed_ip}")


@fips.command("disassociate")
def fip_disassociate(ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Address or id.")]) -> None:
    """Unmap a floating IP (it stays the project's)."""
    typer.echo(context.api(ctx).disassociate_floating_ip(ref).ip)


@fips.command("ls")
def fip_ls(ctx: typer.Context, quiet: Quiet = False) -> None:
    """List floating IPs."""
    items = context.api(ctx).floating_ips()
    if quiet:
        for f in items:
            typer.echo(f.ip)
        return
    print_table(
        ["FLOATING IP", "ID", "NETWORK", "FIXED IP", "INSTANCE", "ROUTER"],
        [
            [
                f.ip,
                short_id(f.id),
                short_id(f.network),
                f.fixed_ip or "-",
                short_id(f.instance) if f.instance else "-",
                short_id(f.router) if f.router else "-",
            ]
            for f in items
        ],
    )


@fips.command("show")
def fip_show(ctx: typer.Context, refs: Refs) -> None:
    """Show floating IPs as JSON."""
    inspect_each(refs, context.api(ctx).inspect_floating_ip)


@fips.command("rm")
def fip_rm(ctx: typer.Context, refs: Refs) -> None:
    """Release floating IPs."""
    for_each(refs, context.api(ctx).remove_floating_ip)
