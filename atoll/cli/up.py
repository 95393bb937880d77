"""``atoll up``: a controller and an agent on this machine, with SQLite. The work is ``atoll.node``'s."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Annotated

import typer

from atoll.dockercerts import make_docker_certs
from atoll.settings import Settings

app = typer.Typer()


def settings_for(
    data_dir: Path | None, port: int | None, host: str | None, docker_tls: dict[str, str | Path] | None = None
) -> Settings:
    """The environment's settings (``ATOLL_*``), with what the options override."""
    settings = Settings()
    if docker_tls:
        settings = dataclasses.replace(settings, **docker_tls)  # type: ignore[arg-type]
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
    docker_tls: Annotated[
        str | None,
        typer.Option("--docker-tls", help="Serve the Docker API over TLS at HOST:PORT (ATOLL_DOCKER_TLS)."),
    ] = None,
    docker_tlscacert: Annotated[
        str | None,
        typer.Option(
            "--docker-tlscacert",
            help="CA of the client certificates; empty: clients unverified (ATOLL_DOCKER_TLS_CA).",
        ),
    ] = None,
    docker_tlscert: Annotated[
        Path | None, typer.Option("--docker-tlscert", help="Server certificate (ATOLL_DOCKER_TLS_CERT).")
    ] = None,
    docker_tlskey: Annotated[
        Path | None, typer.Option("--docker-tlskey", help="Server key (ATOLL_DOCKER_TLS_KEY).")
    ] = None,
) -> None:
    """Run a single-node cloud on this machine: controller, agent and SQLite, in the foreground."""
    # Imported here, not at the top: the server stack takes about a second to import, and every other
    # command of the CLI would pay for it.
    node = importlib.import_module("atoll.node")
    tls = {
        key: value
        for key, value in (
            ("docker_tls", docker_tls),
            ("docker_tls_ca", docker_tlscacert),
            ("docker_tls_cert", docker_tlscert),
            ("docker_tls_key", docker_tlskey),
        )
        if value is not None
    }
    node.run_up(settings_for(data_dir, port, host, tls))


@app.command("docker-certs")
def docker_certs(
    directory: Annotated[Path, typer.Argument(help="Where the files go (made if missing).")] = Path(
        "/etc/atoll/docker"
    ),
    hostname: Annotated[
        list[str] | None,
        typer.Option(
            "--host", help="A name or address clients dial (repeatable; default localhost, 127.0.0.1)."
        ),
    ] = None,
) -> None:
    """Make a CA, a server certificate and a client certificate for the Docker API's TLS listener.

    The server uses server-cert.pem and server-key.pem (the defaults of ATOLL_DOCKER_TLS_CERT/KEY when the
    directory is /etc/atoll/docker); a client points DOCKER_CERT_PATH at the directory (ca.pem, cert.pem,
    key.pem). A CA already in the directory is reused."""
    certs = make_docker_certs(directory, hostname or ["localhost", "127.0.0.1"])
    typer.echo(f"CA {certs.ca}\nserver {certs.server_cert} {certs.server_key}")
    typer.echo(f"client: export DOCKER_CERT_PATH={directory} DOCKER_TLS_VERIFY=1")
