"""``atoll up``: a controller and an agent on this machine, with SQLite. The work is ``atoll.node``'s."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Annotated

import typer

from atoll.settings import Settings

app = typer.Typer()


def settings_for(data_dir: Path | None, port: int | None, host: str | None) -> Settings:
    """The environment's settings (``ATOLL_*``), with what the options override."""
    settings = Settings()
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=data_dir)
    if port is not None:
        settings = dataclasses.replace(settings, api_port=port)
    if host is not None:
        settings = dataclasses.replace(settings, api_host=host)
    return settings


@app.command()
def up(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Images, instances, logs, database (ATOLL_DATA_DIR).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="API port (ATOLL_API_PORT).")] = None,
    host: Annotated[str | None, typer.Option("--host", help="API address (ATOLL_API_HOST).")] = None,
) -> None:
    """Run a single-node cloud on this machine: controller, agent and SQLite, in the foreground."""
    # Imported here, not at the top: the server stack takes about a second to import, and every other
    # command of the CLI would pay for it.
    node = importlib.import_module("atoll.node")
    node.run_up(settings_for(data_dir, port, host))
