"""``atoll host ls|show|drain|undrain|rm``: the hosts of the cloud, with capacity and allocation."""

from __future__ import annotations

from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.output import print_json, print_table
from atoll.host_schemas import HostDetail, Resources

hosts = typer.Typer(help="Show and manage the hosts of the cloud.", no_args_is_help=True)

Ref = Annotated[str, typer.Argument(help="Host id, id prefix or name.")]

GIB = 1 << 30


def _share(allocated: Resources, capacity: Resources | None) -> str:
    if capacity is None:
        return f"cpu {allocated.cpu_millis / 1000:g}, mem {allocated.memory_bytes / GIB:.1f}G"
    return (
        f"cpu {allocated.cpu_millis / 1000:g}/{capacity.cpu_millis / 1000:g}, "
        f"mem {allocated.memory_bytes / GIB:.1f}/{capacity.memory_bytes / GIB:.1f}G"
    )


def _age(h: HostDetail) -> str:
    return "-" if h.heartbeat_age is None else f"{h.heartbeat_age:.1f}s"


def _row(h: HostDetail) -> list[str]:
    return [
        h.id[:12],
        h.name,
        h.state,
        h.runtime or "-",
        f"v{h.cgroup_version}",
        h.address or "local",
        str(h.instances),
        _share(h.allocated, h.capacity),
        _age(h),
    ]


@hosts.command("ls")
def host_ls(ctx: typer.Context) -> None:
    """List hosts: state, address, instances, allocation against capacity, heartbeat age."""
    print_table(
        ["ID", "NAME", "STATE", "RUNTIME", "CGROUP", "ADDRESS", "INSTANCES", "ALLOCATED", "HEARTBEAT"],
        [_row(h) for h in context.api(ctx).cluster_hosts()],
    )


@hosts.command("show")
def host_show(ctx: typer.Context, ref: Ref) -> None:
    """Show one host in full (JSON)."""
    print_json([context.api(ctx).cluster_host(ref)])


@hosts.command("drain")
def host_drain(ctx: typer.Context, ref: Ref) -> None:
    """Stop placing new instances on a host; what runs there keeps running."""
    typer.echo(context.api(ctx).drain_host(ref).id)


@hosts.command("undrain")
def host_undrain(ctx: typer.Context, ref: Ref) -> None:
    """Let the scheduler place instances on a drained host again."""
    typer.echo(context.api(ctx).undrain_host(ref).id)


@hosts.command("evacuate")
def host_evacuate(
    ctx: typer.Context,
    ref: Ref,
    force: Annotated[
        bool, typer.Option("--force", help="Also move instances with volumes or bind mounts (left behind).")
    ] = False,
) -> None:
    """Drain a host, then move every instance on it to other hosts (stop, copy, start elsewhere)."""
    done = context.api(ctx).evacuate_host(ref, force=force)
    rows = [
        [
            m.id[:12],
            m.name,
            m.target[:12],
            f"{m.downtime_ms:.0f} ms" if m.downtime_ms is not None else "-",
            f"{m.precopy_bytes}+{m.delta_bytes} B",
        ]
        for m in done.moved
    ]
    print_table(["ID", "NAME", "NOW ON", "DOWNTIME", "COPIED"], rows)
    for m in done.moved:
        for left in m.left_behind:
            typer.echo(f"warning: {m.name}: {left} stayed on the old host; it starts empty", err=True)
    for u in done.unmoved:
        typer.echo(f"not moved: {u.name} ({u.id[:12]}): {u.reason}", err=True)
    if done.unmoved:
        raise typer.Exit(1)


@hosts.command("rm")
def host_rm(ctx: typer.Context, ref: Ref) -> None:
    """Forget a host that holds no instances; its certificate is no longer accepted."""
    context.api(ctx).remove_host(ref)
    typer.echo(ref)
