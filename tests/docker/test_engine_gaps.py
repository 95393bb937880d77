"""Behaviour docker-py's upstream suite and the CLI rely on: exec inspect's Pid, `restart` of a `--rm`
container, request bodies over 64 MiB (streamed), and X-Registry-Auth on pull and push."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.e2e.cloud import Cloud
from tests.registry.server import Registry, running_registry

USER, PASSWORD = "dockerpy", "s3cret-pw"


@pytest.fixture(scope="module")
def authreg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("authreg"), htpasswd=(USER, PASSWORD)) as reg:
        yield reg


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, authreg: Registry) -> Iterator[Cloud]:
    """This module's own cloud, which reaches the htpasswd registry over plain HTTP."""
    c = Cloud(
        base=tmp_path_factory.mktemp("atoll-test-docker"),
        extra_env={"ATOLL_INSECURE_REGISTRIES": authreg.host},
    )
    with c.running():
        yield c


@pytest.fixture
def api(dockerpy: docker.DockerClient) -> docker.APIClient:
    return dockerpy.api


def _sleeper(api: docker.APIClient, **host: object) -> str:
    cid: str = api.create_container("busybox", ["sleep", "300"], host_config=api.create_host_config(**host))[
        "Id"
    ]
    api.start(cid)
    return cid


def test_exec_inspect_reports_the_host_pid(api: docker.APIClient) -> None:
    cid = _sleeper(api)
    try:
        exec_id = api.exec_create(cid, ["sleep", "123"])["Id"]
        api.exec_start(exec_id, detach=True)
        info = api.exec_inspect(exec_id)
        assert info["Running"] is True
        pid = info["Pid"]
        assert pid > 0
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00123\x00"
        container_pid = api.inspect_container(cid)["State"]["Pid"]
        assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{container_pid}/ns/pid")
    finally:
        api.remove_container(cid, force=True)


def test_restart_keeps_an_auto_remove_container(api: docker.APIClient) -> None:
    cid = _sleeper(api, auto_remove=True)
    try:
        api.restart(cid, timeout=1)
        state = api.inspect_container(cid)["State"]
        assert state["Running"] is True
        api.stop(cid, timeout=1)  # a plain stop still removes it
        deadline = time.monotonic() + 20
        with pytest.raises(docker.errors.NotFound):
            while time.monotonic() < deadline:
                api.inspect_container(cid)
                time.sleep(0.1)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(cid, force=True)


def test_put_archive_streams_a_body_over_64_mib(api: docker.APIClient) -> None:
    size = 70 << 20
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("big.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(b"\x5a" * size))
    cid = _sleeper(api)
    try:
        assert api.put_archive(cid, "/tmp", buf.getvalue()) is True
        out = api.exec_start(api.exec_create(cid, ["sh", "-c", "stat -c %s /tmp/big.bin"])["Id"])
        assert out.strip() == str(size).encode()
        # The connection stays usable after a streamed body, and an empty one is still refused.
        assert api.ping()
        with pytest.raises(docker.errors.APIError, match="body: a tar archive is required"):
            api.put_archive(cid, "/tmp", b"")
    finally:
        api.remove_container(cid, force=True)


def test_x_registry_auth_is_used_for_push_and_pull(api: docker.APIClient, authreg: Registry) -> None:
    repo = f"{authreg.host}/team/hello-{uuid.uuid4().hex[:6]}"
    api.tag("busybox", repo, "1")
    good = {"username": USER, "password": PASSWORD}
    try:
        with pytest.raises(docker.errors.APIError, match="authentication required"):
            list(api.push(repo, tag="1", stream=True, decode=True))
        pushed = list(api.push(repo, tag="1", stream=True, decode=True, auth_config=good))
        assert "error" not in pushed[-1], pushed
        assert any("digest: sha256:" in line.get("status", "") for line in pushed)
        api.remove_image(f"{repo}:1")

        with pytest.raises(docker.errors.APIError):
            api.pull(repo, tag="1", auth_config={"username": USER, "password": "wrong"})
        api.pull(repo, tag="1", auth_config=good)
        assert api.inspect_image(f"{repo}:1")["Id"] == api.inspect_image("busybox")["Id"]
    finally:
        for ref in (f"{repo}:1",):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_image(ref)


def test_a_bad_x_registry_auth_header_is_refused_by_name(api: docker.APIClient) -> None:
    resp = api._post(
        api._url("/images/create"),
        params={"fromImage": "busybox", "tag": "latest"},
        headers={"X-Registry-Auth": "!!not-base64!!"},
    )
    assert resp.status_code == 400
    assert "X-Registry-Auth" in resp.json()["message"]


def test_an_attach_of_stdin_alone_stays_open_until_the_detach_keys(api: docker.APIClient) -> None:
    cid = api.create_container("busybox", "cat", stdin_open=True, tty=True)["Id"]
    api.start(cid)
    try:
        sock = api.attach_socket(cid, {"stdin": 1, "stream": 1, "detachKeys": "ctrl-x"})
        raw = sock._sock
        time.sleep(0.5)  # nothing to send back: the server must not end the attach on its own
        raw.sendall(b"typed-in\n")
        deadline = time.monotonic() + 20
        while b"typed-in" not in api.logs(cid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"typed-in" in api.logs(cid)
        raw.sendall(b"\x18")  # ctrl-x: the server ends the attach, the container keeps running
        raw.settimeout(20)
        assert raw.recv(128) == b""
        assert api.inspect_container(cid)["State"]["Running"] is True
        sock.close()
    finally:
        api.remove_container(cid, force=True)


def test_exec_detach_keys_end_the_session_and_leave_the_process(api: docker.APIClient) -> None:
    cid = _sleeper(api)
    try:
        exec_id = api.exec_create(cid, "cat", stdin=True, tty=True, detach_keys="ctrl-x")["Id"]
        sock = api.exec_start(exec_id, tty=True, socket=True)
        raw = sock._sock
        raw.sendall(b"echoed\n")
        raw.settimeout(20)
        seen = b""
        while b"echoed\r\n" not in seen.replace(b"echoed\r\n", b"", 1):  # the tty's echo, then cat's
            seen += raw.recv(128)
        raw.sendall(b"\x18")
        rest = b""
        while chunk := raw.recv(128):
            rest += chunk
        sock.close()
        info = api.exec_inspect(exec_id)
        assert info["Running"] is True and info["Pid"] > 0
        assert Path(f"/proc/{info['Pid']}/cmdline").read_bytes() == b"cat\x00"
        with pytest.raises(docker.errors.APIError, match="detachKeys"):
            api.exec_create(cid, "cat", detach_keys="ctrl-")
    finally:
        api.remove_container(cid, force=True)
