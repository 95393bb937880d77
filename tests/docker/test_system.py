"""The listener: negotiation (/_ping, /version, /info), versioned paths, errors, both sockets."""

from __future__ import annotations

import json
import socket

import docker
import httpx

from tests.docker.conftest import DockerCLI
from tests.e2e.cloud import Cloud


def test_cli_version_negotiates_the_newest_api(cli: DockerCLI) -> None:
    out = json.loads(cli.ok("version", "--format", "{{json .}}"))
    assert out["Client"]["ApiVersion"] == "1.50"
    assert out["Server"]["ApiVersion"] == "1.50"
    assert out["Server"]["MinAPIVersion"] == "1.24"
    assert out["Server"]["Os"] == "linux"


def test_info_fields_the_cli_reads(cli: DockerCLI) -> None:
    info = json.loads(cli.ok("info", "--format", "{{json .}}"))
    assert info["OSType"] == "linux"
    assert info["Images"] >= 1  # the busybox starter image
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["NCPU"] >= 1 and info["MemTotal"] > 0


def test_ping_get_and_head_carry_the_negotiation_headers(cloud: Cloud) -> None:
    transport = httpx.HTTPTransport(uds=str(cloud.docker_socket))
    with httpx.Client(transport=transport, base_url="http://docker") as client:
        for method in ("GET", "HEAD"):
            r = client.request(method, "/_ping")
            assert r.status_code == 200
            assert r.headers["api-version"] == "1.50"
            assert r.headers["ostype"] == "linux"
            assert r.headers["docker-experimental"] == "false"
            assert r.headers["builder-version"] == "1"
            assert r.content == (b"OK" if method == "GET" else b"")


def test_versions_outside_the_range_get_dockers_400(cloud: Cloud) -> None:
    transport = httpx.HTTPTransport(uds=str(cloud.docker_socket))
    with httpx.Client(transport=transport, base_url="http://docker") as client:
        assert client.get("/v1.24/version").status_code == 200
        assert client.get("/v1.50/_ping").status_code == 200
        old = client.get("/v1.23/version")
        assert old.status_code == 400
        assert "too old" in old.json()["message"] and "1.24" in old.json()["message"]
        new = client.get("/v1.51/version")
        assert new.status_code == 400
        assert "too new" in new.json()["message"] and "1.50" in new.json()["message"]
        missing = client.get("/v1.50/nothing/here")
        assert missing.status_code == 404 and missing.json() == {"message": "page not found"}


def test_keep_alive_serves_several_requests_on_one_connection(cloud: Cloud) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(cloud.docker_socket))
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\nGET /v1.50/version HTTP/1.1\r\nHost: d\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, f"connection closed early: {data!r}"
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2


def test_tcp_listener_and_docker_py(cloud: Cloud, dockerpy: docker.DockerClient) -> None:
    assert dockerpy.ping() is True
    assert dockerpy.version()["ApiVersion"] == "1.50"
    over_tcp = docker.DockerClient(base_url=f"tcp://127.0.0.1:{cloud.docker_port}", version="1.41")
    try:
        assert over_tcp.version()["Os"] == "linux"
    finally:
        over_tcp.close()
