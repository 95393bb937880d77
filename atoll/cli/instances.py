"""Instance lifecycle commands, named and shaped as docker's: ps, logs, start, stop, restart, kill, rm,
inspect, wait, rename."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.humanize import ago, ellipsize, instance_status, short_id
from atoll.cli.output import for_each, inspect_each, print_table, write_frames
from atoll.cli.parsing import parse_filters
from atoll.schemas import Instance

app = typer.Typer()

Refs = Annotated[list[str], typer.Argument(help="Instance names or ids.")]
StopTime = Annotated[
    float | None, typer.Option("--time", "--timeout", "-t", help="Seconds to wait before killing.")
]


@app.command()
def ps(
    ctx: typer.Context,
    all: Annotated[bool, typer.Option("--all", "-a", help="Show all instances, not only running.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only ids.")] = False,
    filter: Annotated[
        list[str] | None, typer.Option("--filter", "-f", help="label=K[=V], name=N or status=S.")
    ] = None,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not truncate ids and commands.")] = False,
) -> None:
    """List instances."""
    filters = parse_filters(filter or [])
    instances = context.api(ctx).instances(
        all=all, labels=filters.get("label"), names=filters.get("name"), statuses=filters.get("status")
    )
    instances.sort(key=lambda i: i.created_at, reverse=True)
    if quiet:
        for inst in instances:
            typer.echo(inst.id if no_trunc else short_id(inst.id))
        return
    now = datetime.now(UTC)
    print_table(
        ["ID", "NAME", "IMAGE", "COMMAND", "STATUS", "CREATED"],
        [_ps_row(inst, now, no_trunc) for inst in instances],
    )


def _ps_row(inst: Instance, now: datetime, no_trunc: bool) -> list[str]:
    command = shlex.join(inst.process.args)
    return [
        inst.id if no_trunc else short_id(inst.id),
        inst.name,
        inst.image,
        f'"{command if no_trunc else ellipsize(command, 20)}"',
        instance_status(inst, now),
        ago(inst.created_at, now),
    ]


@app.command()
def logs(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Instance name or id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following new output.")] = False,
    tail: Annotated[str | None, typer.Option("--tail", "-n", help='Lines from the end, or "all".')] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Prefix RFC 3339 times.")] = False,
    since: Annotated[str | None, typer.Option("--since", help="Only after this time.")] = None,
) -> None:
    """Print an instance's output: its stdout to stdout, its stderr to stderr."""
    if tail is not None and tail != "all" and not tail.isdigit():
        raise typer.BadParameter(f"{tail!r} is not a number of lines or 'all'", param_hint="--tail")
    api = context.api(ctx)
    try:
        with api.logs(ref, follow=follow, tail=tail, timestamps=timestamps, since=since) as frames:
            write_frames(frames)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def start(ctx: typer.Context, refs: Refs) -> None:
    """Start instances."""
    api = context.api(ctx)
    for_each(refs, api.start_instance)


@app.command()
def stop(
    ctx: typer.Context,
    refs: Refs,
    time: StopTime = None,
) -> None:
    """Stop instances: the stop signal, then SIGKILL after the timeout."""
    api = context.api(ctx)
    for_each(refs, lambda ref: api.stop_instance(ref, timeout=time))


@app.command()
def restart(
    ctx: typer.Context,
    refs: Refs,
    time: StopTime = None,
) -> None:
    """Restart instances."""
    api = context.api(ctx)
    for_each(refs, lambda ref: api.restart_instance(ref, timeout=time))


@app.command()
def kill(
    ctx: typer.Context,
    refs: Refs,
    signal: Annotated[str | None, typer.Option("--signal", "-s", help="Signal name or number.")] = None,
) -> None:
    """Send a signal (SIGKILL by default) to instances."""
    api = context.api(ctx)
    for_each(refs, lambda ref: api.kill_instance(ref, signal=signal))


@app.command()
def rm(
    ctx: typer.Context,
    refs: Refs,
    force: Annotated[bool, typer.Option("--force", "-f", help="Kill a running instance first.")] = False,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="Remove its anonymous volumes.")] = False,
) -> None:
    """Remove instances."""
    api = context.api(ctx)
    if volumes:
        for_each(refs, lambda ref: api.remove_instance(ref, force=force, volumes=True))
    else:
        for_each(refs, lambda ref: api.remove_instance(ref, force=force))


@app.command()
def inspect(ctx: typer.Context, refs: Refs) -> None:
    """Show instances as JSON."""
    inspect_each(refs, context.api(ctx).inspect_instance)


@app.command()
def wait(ctx: typer.Context, refs: Refs) -> None:
    """Block until instances exit, and print their exit codes."""
    for_each(refs, context.api(ctx).wait_instance, show=lambda _, result: typer.echo(result.exit_code))


@app.command()
def rename(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Instance name or id.")],
    new_name: Annotated[str, typer.Argument(help="Its new name (also its name on its networks).")],
) -> None:
    """Rename an instance."""
    context.api(ctx).rename_instance(ref, new_name)
