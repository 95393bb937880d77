"""``atoll sg``: security groups and their rules; ``atoll port update`` (a port's or an instance's groups)
and ``atoll port mappings`` (published ports of an instance, as ``docker port`` shows them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.humanize import ago, short_id
from atoll.cli.networks import ports
from atoll.cli.output import for_each, inspect_each, print_table
from atoll.cli.publishopts import mapping_line
from atoll.schemas import SecurityGroupCreate, SecurityGroupRule, SecurityGroupRuleCreate

groups = typer.Typer(help="Manage security groups.", no_args_is_help=True)
rules = typer.Typer(help="Manage the rules of security groups.", no_args_is_help=True)
groups.add_typer(rules, name="rule")

Refs = Annotated[list[str], typer.Argument(help="Names or ids.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only ids.")]


@groups.command("create")
def sg_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Group name.")],
    description: Annotated[str, typer.Option("--description", help="Free text.")] = "",
) -> None:
    """Create a security group: all egress allowed, no ingress until rules allow it."""
    spec = SecurityGroupCreate(name=name, description=description)
    typer.echo(context.api(ctx).create_security_group(spec).id)


@groups.command("ls")
def sg_ls(ctx: typer.Context, quiet: Quiet = False) -> None:
    """List security groups."""
    items = context.api(ctx).security_groups()
    if quiet:
        for g in items:
            typer.echo(short_id(g.id))
        return
    now = datetime.now(UTC)
    print_table(
        ["GROUP ID", "NAME", "RULES", "DESCRIPTION", "CREATED"],
        [[short_id(g.id), g.name, str(len(g.rules)), g.description, ago(g.created_at, now)] for g in items],
    )


def _describe(rule: SecurityGroupRule, names: dict[str, str]) -> list[str]:
    ports = "any"
    if rule.port_range_min is not None:
        ports = str(rule.port_range_min)
        if rule.port_range_max not in (None, rule.port_range_min):
            ports += f":{rule.port_range_max}"
    remote = rule.remote_ip_prefix or ""
    if rule.remote_group:
        remote = f"group {names.get(rule.remote_group, short_id(rule.remote_group))}"
    return [short_id(rule.id), rule.direction, rule.protocol, ports, remote]


@groups.command("show")
def sg_show(ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Group name or id.")]) -> None:
    """Show a group's rules."""
    api = context.api(ctx)
    group = api.inspect_security_group(ref)
    names = {g.id: g.name for g in api.security_groups()}
    typer.echo(f"{group.name} ({group.id}){': ' + group.description if group.description else ''}")
    print_table(
        ["RULE ID", "DIRECTION", "PROTOCOL", "PORTS", "REMOTE"], [_describe(r, names) for r in group.rules]
    )


@groups.command("inspect")
def sg_inspect(ctx: typer.Context, refs: Refs) -> None:
    """Show security groups as JSON."""
    inspect_each(refs, context.api(ctx).inspect_security_group)


@groups.command("rm")
def sg_rm(ctx: typer.Context, refs: Refs) -> None:
    """Remove security groups; refused while ports use them or rules name them."""
    for_each(refs, context.api(ctx).remove_security_group)


def _port_range(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    low, sep, high = text.partition(":")
    try:
        return int(low), int(high) if sep else None
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not PORT or PORT:PORT", param_hint="--port") from None


@rules.command("add")
def rule_add(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="Group name or id.")],
    ingress: Annotated[bool, typer.Option("--ingress", help="Traffic to the instances (default).")] = False,
    egress: Annotated[bool, typer.Option("--egress", help="Traffic from the instances.")] = False,
    proto: Annotated[str, typer.Option("--proto", "--protocol", help="tcp, udp, icmp or any.")] = "any",
    port: Annotated[str | None, typer.Option("--port", help="PORT or FIRST:LAST (tcp, udp).")] = None,
    remote_ip: Annotated[str | None, typer.Option("--remote-ip", help="Peer CIDR (default any).")] = None,
    remote_group: Annotated[
        str | None, typer.Option("--remote-group", help="Peers: the members of this group.")
    ] = None,
) -> None:
    """Add an allow rule to a group."""
    if ingress and egress:
        raise typer.BadParameter("give --ingress or --egress, not both")
    low, high = _port_range(port)
    fields: dict[str, object] = {"direction": "egress" if egress else "ingress", "protocol": proto}
    optional = {
        "port_range_min": low,
        "port_range_max": high,
        "remote_ip_prefix": remote_ip,
        "remote_group": remote_group,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    rule = context.api(ctx).add_security_group_rule(group, SecurityGroupRuleCreate.model_validate(fields))
    typer.echo(rule.id)


@rules.command("rm")
def rule_rm(ctx: typer.Context, refs: Annotated[list[str], typer.Argument(help="Rule ids.")]) -> None:
    """Remove rules."""
    for_each(refs, context.api(ctx).remove_security_group_rule)


@ports.command("update")
def port_update(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Port id, or an instance with --instance.")],
    security_group: Annotated[
        list[str] | None, typer.Option("--security-group", "--sg", help="Group; repeatable.")
    ] = None,
    no_security_group: Annotated[
        bool, typer.Option("--no-security-group", help="No groups: nothing but replies passes.")
    ] = False,
    instance: Annotated[bool, typer.Option("--instance", help="REF is an instance: all its ports.")] = False,
) -> None:
    """Set the security groups of a port (or of every port of an instance); applies at once."""
    if not security_group and not no_security_group:
        raise typer.BadParameter("give --security-group (repeatable) or --no-security-group")
    wanted = [] if no_security_group else list(security_group or [])
    api = context.api(ctx)
    changed = (
        api.set_instance_security_groups(ref, wanted)
        if instance
        else [api.set_port_security_groups(ref, wanted)]
    )
    for port in changed:
        typer.echo(port.id)


@ports.command("mappings")
def port_mappings(
    ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Instance name or id.")]
) -> None:
    """Show an instance's published ports, as ``docker port`` does."""
    for p in context.api(ctx).inspect_instance(ref).published:
        typer.echo(mapping_line(p.container_port, p.protocol, p.host_ip, p.host_port))
