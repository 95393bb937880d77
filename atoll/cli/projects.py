"""``atoll project`` (``atoll host`` lives in ``hosts``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.humanize import ago
from atoll.cli.output import print_table

projects = typer.Typer(help="Manage projects (tenants).", no_args_is_help=True)


@projects.command("ls")
def project_ls(
    ctx: typer.Context, quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only names.")] = False
) -> None:
    """List projects."""
    items = context.api(ctx).projects()
    if quiet:
        for project in items:
            typer.echo(project.name)
        return
    now = datetime.now(UTC)
    print_table(["NAME", "CREATED"], [[p.name, ago(p.created_at, now)] for p in items])


@projects.command("create")
def project_create(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Project name.")]) -> None:
    """Create a project."""
    typer.echo(context.api(ctx).create_project(name).name)
