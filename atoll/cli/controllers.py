"""``atoll controller ls``: the controllers sharing the cloud's database (docs/cluster.md)."""

from __future__ import annotations

import typer

from atoll.cli import context
from atoll.cli.output import print_table

controllers = typer.Typer(help="Show the controllers of the cloud.", no_args_is_help=True)


@controllers.command("ls")
def controller_ls(ctx: typer.Context) -> None:
    """List controllers: cluster address, API, state (alive or expired) and age of the last renewal.

    Agents are told about alive controllers only; an expired one is deleted by the lease holder soon
    after, and listed again if it renews its presence."""
    print_table(
        ["ADDRESS", "API", "STATE", "SEEN", "STARTED"],
        [
            [c.address, c.api_url, c.state, f"{c.seen_age:.1f}s ago", c.started_at]
            for c in context.api(ctx).controllers()
        ],
    )
