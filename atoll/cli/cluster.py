"""``atoll serve``, ``atoll join``, ``atoll agent`` and ``atoll token create``.

The first three run servers; like ``atoll up`` they import their stack by name only when run, so the
rest of the CLI neither pays for it nor depends on it.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Annotated

import typer

from atoll.cli import context
from atoll.cli.output import fail
from atoll.cli.up import settings_for
from atoll.model.errors import AtollError

app = typer.Typer()
tokens = typer.Typer(help="Join tokens for new hosts.", no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (ATOLL_DATA_DIR).")]


@app.command()
def serve(
    data_dir: DataDir = None,
    port: Annotated[int | None, typer.Option("--port", help="API port (ATOLL_API_PORT).")] = None,
    host: Annotated[str | None, typer.Option("--host", help="API address (ATOLL_API_HOST).")] = None,
    cluster_port: Annotated[
        int | None, typer.Option("--cluster-port", help="Port agents dial (ATOLL_CLUSTER_PORT).")
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option("--advertise", help="host:port put in join tokens (ATOLL_CLUSTER_ADVERTISE)."),
    ] = None,
) -> None:
    """Run a controller only: hosts join it with `atoll join`."""
    settings = settings_for(data_dir, port, host)
    if cluster_port is not None:
        settings = dataclasses.replace(settings, cluster_port=cluster_port)
    if advertise is not None:
        settings = dataclasses.replace(settings, cluster_advertise=advertise)
    importlib.import_module("atoll.controller").run_serve(settings)


@app.command()
def join(
    token: Annotated[str, typer.Argument(help="The token printed by `atoll token create`.")],
    data_dir: DataDir = None,
    listen: Annotated[
        str, typer.Option("--listen", help="host:port this agent's API binds to.")
    ] = "0.0.0.0:7782",
    advertise: Annotated[str, typer.Option("--advertise", help="host:port the controller dials.")] = "",
    start: Annotated[bool, typer.Option("--start/--no-start", help="Run the agent once joined.")] = True,
) -> None:
    """Join this machine to a cloud as a host, then run its agent."""
    settings = settings_for(data_dir, None, None)
    main = importlib.import_module("atoll.agent.cluster.main")
    try:
        main.join_and_run(settings, token, listen=listen, advertise=advertise, start=start)
    except AtollError as e:
        fail(e.message)


@app.command()
def agent(data_dir: DataDir = None) -> None:
    """Run the agent of a host that has joined a cloud."""
    try:
        importlib.import_module("atoll.agent.cluster.main").run(settings_for(data_dir, None, None))
    except FileNotFoundError as e:
        fail(str(e))


@tokens.command("create")
def token_create(
    ctx: typer.Context,
    ttl: Annotated[float, typer.Option("--ttl", help="Seconds the token stays valid.")] = 3600.0,
) -> None:
    """Print a single-use join token: `atoll join TOKEN` on the new host."""
    typer.echo(context.api(ctx).create_join_token(ttl).token)
