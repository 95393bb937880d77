"""``atoll image pull|push|prune`` and ``atoll login|logout``: registries, through the SDK."""

from __future__ import annotations

from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.humanize import human_size
from atoll.cli.images import app as image_app
from atoll.cli.output import CliError
from atoll.cli.transfer import layer_display

app = typer.Typer()


@image_app.command()
def pull(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="NAME[:TAG] or NAME@sha256:DIGEST.", metavar="REFERENCE")],
) -> None:
    """Pull an image from a registry (or its mirror), showing each layer's progress."""
    api = context.api(ctx)
    with layer_display() as show:
        image = api.pull_image(reference, show)
    typer.echo(image.id)


@image_app.command()
def push(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="A local image's NAME[:TAG].", metavar="REFERENCE")],
) -> None:
    """Push an image to the registry its name points at."""
    api = context.api(ctx)
    with layer_display() as show:
        digest = api.push_image(reference, show)
    typer.echo(digest)


@image_app.command()
def prune(
    ctx: typer.Context,
    all: Annotated[
        bool, typer.Option("--all", "-a", help="Every image no instance uses, not only dangling ones.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove unused images: dangling ones (no tag), or with -a every image no instance uses."""
    if not force:
        what = "all images without at least one instance using them" if all else "all dangling images"
        typer.confirm(f"WARNING! This will remove {what}. Are you sure you want to continue?", abort=True)
    result = context.api(ctx).prune_images(all=all)
    for tag in result.untagged:
        typer.echo(f"untagged: {tag}")
    for ident in result.deleted:
        typer.echo(f"deleted: {ident}")
    typer.echo(f"Total reclaimed space: {human_size(result.reclaimed)}")


@app.command()
def login(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(help="host[:port]; docker.io for Docker Hub.")] = "docker.io",
    username: Annotated[str | None, typer.Option("--username", "-u", help="User name.")] = None,
    password: Annotated[
        str | None, typer.Option("--password", "-p", help="Password (prefer --password-stdin).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Log in to a registry: the project keeps the credentials for its pulls and pushes."""
    if password_stdin:
        if password is not None:
            raise CliError("--password and --password-stdin are mutually exclusive")
        password = typer.get_text_stream("stdin").read().rstrip("\r\n")
    if username is None:
        username = typer.prompt("Username")
    if not password:
        password = typer.prompt("Password", hide_input=True)
    view = context.api(ctx).login(registry, username, password)
    typer.echo(f"Login Succeeded ({view.username} at {view.registry})")


@app.command()
def logout(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(help="host[:port]; docker.io for Docker Hub.")] = "docker.io",
) -> None:
    """Forget the project's login to a registry."""
    context.api(ctx).logout(registry)
    typer.echo(f"Removing login credentials for {registry}")
