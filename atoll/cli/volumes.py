"""``atoll volume``: create, ls, inspect, rm and prune, as ``docker volume`` does them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.humanize import ago
from atoll.cli.output import for_each, inspect_each, print_table
from atoll.cli.parsing import parse_labels
from atoll.schemas import VolumeCreate

volumes = typer.Typer(help="Manage volumes.", no_args_is_help=True)

Refs = Annotated[list[str], typer.Argument(help="Names or ids.")]
FILTER_KEYS = ("name", "label", "driver", "dangling")


def parse_volume_filters(items: list[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise typer.BadParameter(
                f"invalid filter {item!r}; supported: {', '.join(FILTER_KEYS)} (KEY=VALUE)"
            )
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise typer.BadParameter(f"invalid filter {item!r}: dangling is true or false")
        filters.setdefault(key, []).append(value)
    return filters


def parse_options(items: list[str]) -> dict[str, str]:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise typer.BadParameter(f"invalid driver option {item!r} (expected KEY=VALUE)")
        options[key] = value
    return options


@volumes.command("create")
def volume_create(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Volume name (default: a random id).")] = None,
    driver: Annotated[str, typer.Option("--driver", "-d", help="Volume driver.")] = "local",
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE label.")] = None,
    opt: Annotated[list[str] | None, typer.Option("--opt", "-o", help="KEY=VALUE driver option.")] = None,
) -> None:
    """Create a volume; print its name."""
    fields: dict[str, object] = {"driver": driver}
    if name is not None:
        fields["name"] = name
    if label:
        fields["labels"] = parse_labels(label)
    if opt:
        fields["options"] = parse_options(opt)
    typer.echo(context.api(ctx).create_volume(VolumeCreate.model_validate(fields)).name)


@volumes.command("ls")
def volume_ls(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only names.")] = False,
    filter: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", help="name=N, label=K[=V], driver=D or dangling=true|false."),
    ] = None,
) -> None:
    """List volumes."""
    filters = parse_volume_filters(filter or [])
    dangling = filters.get("dangling")
    items = context.api(ctx).volumes(
        name=filters.get("name", []),
        label=filters.get("label", []),
        driver=filters.get("driver", []),
        dangling=None if not dangling else dangling[-1].lower() in ("true", "1"),
    )
    if quiet:
        for vol in items:
            typer.echo(vol.name)
        return
    now = datetime.now(UTC)
    print_table(
        ["DRIVER", "VOLUME NAME", "USED BY", "CREATED"],
        [[v.driver, v.name, ",".join(v.used_by) or "-", ago(v.created_at, now)] for v in items],
    )


@volumes.command("inspect")
def volume_inspect(ctx: typer.Context, refs: Refs) -> None:
    """Show volumes as JSON."""
    inspect_each(refs, context.api(ctx).inspect_volume)


@volumes.command("rm")
def volume_rm(
    ctx: typer.Context,
    refs: Refs,
    force: Annotated[
        bool,
        typer.Option("--force", "-f", help="Accepted for docker's sake; a volume in use is never removed."),
    ] = False,
) -> None:
    """Remove volumes and their data; refused while an instance uses them."""
    for_each(refs, context.api(ctx).remove_volume)


@volumes.command("prune")
def volume_prune(
    ctx: typer.Context,
    all: Annotated[
        bool, typer.Option("--all", "-a", help="Named volumes too, not only anonymous ones.")
    ] = False,
    filter: Annotated[list[str] | None, typer.Option("--filter", help="label=K[=V].")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask (atoll never asks).")] = False,
) -> None:
    """Remove volumes that no instance uses: anonymous ones, and named ones with --all."""
    labels = []
    for item in filter or []:
        key, _, value = item.partition("=")
        if key != "label" or not value:
            raise typer.BadParameter(f"invalid filter {item!r}; supported: label=K[=V]")
        labels.append(value)
    result = context.api(ctx).prune_volumes(all=all, label=labels)
    if result.deleted:
        typer.echo("Deleted Volumes:")
        for name in result.deleted:
            typer.echo(name)
    typer.echo(f"Total: {len(result.deleted)} volume(s) removed")
