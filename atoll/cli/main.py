"""The ``atoll`` command: wiring only. Each command group lives in its own module, built on the SDK."""

from __future__ import annotations

from typing import Annotated

import typer

from atoll import __version__
from atoll.cli import (
    cluster,
    execute,
    hosts,
    images,
    instances,
    networks,
    projects,
    registry,
    routers,
    run,
    secgroups,
    up,
)
from atoll.cli import volumes as volume_cli
from atoll.cli.context import CliState
from atoll.cli.controllers import controllers as controller_cli
from atoll.cli.output import AtollGroup
from atoll.client import DEFAULT_PROJECT, DEFAULT_URL, AtollAPI

app = typer.Typer(
    name="atoll",
    cls=AtollGroup,
    help="Atoll: a container-native cloud.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

TOP_LEVEL = (run.app, instances.app, execute.app, registry.app, up.app, cluster.app)
GROUPS = {
    "image": images.app,
    "project": projects.projects,
    "host": hosts.hosts,
    "network": networks.networks,
    "subnet": networks.subnets,
    "port": networks.ports,
    "volume": volume_cli.volumes,
    "router": routers.routers,
    "fip": routers.fips,
    "sg": secgroups.groups,
    "token": cluster.tokens,
    "controller": controller_cli,
}

for sub in TOP_LEVEL:
    app.add_typer(sub)
for group_name, group in GROUPS.items():
    app.add_typer(group, name=group_name)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"atoll {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="ATOLL_URL", help="The Atoll API.")] = DEFAULT_URL,
    project: Annotated[
        str, typer.Option("--project", envvar="ATOLL_PROJECT", help="Project to act in.")
    ] = DEFAULT_PROJECT,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    # An embedding program or a test may pass an ApiFactory as the context object.
    factory = ctx.obj if callable(ctx.obj) else AtollAPI
    state = CliState(url=url, project=project, factory=factory)
    ctx.obj = state
    ctx.call_on_close(state.close)
