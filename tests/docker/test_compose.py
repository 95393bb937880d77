"""Compose against Atoll: Debian 12's `docker-compose` (Compose 1.29, on docker-py) brings up a
two-service project with a user network, a named volume, a published port and depends_on, the
services find each other by service name, and `down -v` takes everything away again."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.docker.conftest import DockerCLI
from tests.e2e.cloud import free_port

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
PROJECT = "atollcompose"
API_VERSION = "1.45"
"""Compose 1.x at API 1.45+ disconnects and reconnects every service on `up` (before 1.45 it finds the
container's short id among its aliases and skips that), so this pins the path that uses network
connect/disconnect."""

COMPOSE_FILE = """
version: "3.8"
services:
  db:
    image: busybox
    command: ["sh", "-c", "echo hello-from-db > /www/index.html && exec httpd -f -p 8080 -h /www"]
    volumes: ["data:/www"]
    networks: ["back"]
  web:
    image: busybox
    depends_on: ["db"]
    command:
      - sh
      - -c
      - >-
        mkdir -p /srv && until wget -qO /srv/page http://db:8080/; do sleep 0.2; done;
        exec httpd -f -p 80 -h /srv
    ports: ["127.0.0.1:{port}:80"]
    networks: ["back"]
networks:
  back:
    labels: {{"tier": "back"}}
volumes:
  data: {{}}
"""


def compose(
    cli: DockerCLI, workdir: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMPOSE, "--ansi", "never", "-p", PROJECT, *args],
        cwd=workdir,
        env={**cli.env(), "COMPOSE_INTERACTIVE_NO_CLI": "1", "COMPOSE_API_VERSION": API_VERSION},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _get(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            resp = httpx.get(url, timeout=2)
            if resp.status_code == 200:
                return resp
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 in time")
        time.sleep(0.3)


def _project_objects(cli: DockerCLI) -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={PROJECT}"
    return {
        kind: cli.ok(
            *cmd, "--filter", label, "--format", "{{.Name}}" if kind != "containers" else "{{.Names}}"
        ).split()
        for kind, cmd in (
            ("containers", ("ps", "-a")),
            ("networks", ("network", "ls")),
            ("volumes", ("volume", "ls")),
        )
    }


def test_compose_up_reach_by_service_name_and_down(cli: DockerCLI, tmp_path: Path) -> None:
    if not Path(COMPOSE).exists():
        pytest.skip("docker-compose is not installed (scripts/setup-system installs it)")
    port = free_port()
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.format(port=port))
    up = compose(cli, tmp_path, "up", "-d")
    try:
        assert up.returncode == 0, up.stderr
        # web fetched db's page by the service name over the user network, and serves it published.
        assert _get(f"http://127.0.0.1:{port}/page", time.monotonic() + 60).text == "hello-from-db\n"
        execd = compose(cli, tmp_path, "exec", "-T", "web", "wget", "-qO-", "http://db:8080/")
        assert (execd.returncode, execd.stdout) == (0, "hello-from-db\n"), execd.stderr

        objects = _project_objects(cli)
        assert sorted(objects["containers"]) == [f"{PROJECT}_db_1", f"{PROJECT}_web_1"]
        assert objects["networks"] == [f"{PROJECT}_back"]
        assert objects["volumes"] == [f"{PROJECT}_data"]
        network = json.loads(cli.ok("network", "inspect", f"{PROJECT}_back"))[0]
        assert network["Labels"]["tier"] == "back"
        assert network["Labels"]["com.docker.compose.network"] == "back"

        # A second `up` compares the network and volume it finds with the file: nothing to recreate.
        again = compose(cli, tmp_path, "up", "-d")
        assert again.returncode == 0, again.stderr
        assert "is up-to-date" in again.stderr
        ps = compose(cli, tmp_path, "ps")
        assert ps.returncode == 0 and ps.stdout.count(" Up ") == 2, ps.stdout
    finally:
        down = compose(cli, tmp_path, "down", "-v")
    assert down.returncode == 0, down.stderr
    assert _project_objects(cli) == {"containers": [], "networks": [], "volumes": []}
