"""The listener's hijack at the byte level: 101 UPGRADED, stdin sent right behind the request, framing."""

from __future__ import annotations

import json
import socket
import struct
import time

from tests.docker.conftest import DockerCLI
from tests.e2e.cloud import Cloud


def _request(sock: socket.socket, method: str, path: str, body: bytes = b"", upgrade: bool = False) -> None:
    headers = [f"{method} {path} HTTP/1.1", "Host: docker", f"Content-Length: {len(body)}"]
    if body:
        headers.append("Content-Type: application/json")
    if upgrade:
        headers += ["Connection: Upgrade", "Upgrade: tcp"]
    sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode() + body)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _read_json(sock: socket.socket) -> tuple[bytes, dict[str, object]]:
    head, rest = _read_head(sock)
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
    )
    while len(rest) < length:
        rest += sock.recv(4096)
    return head, json.loads(rest[:length])


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while len(data) >= 8:
        stream, size = struct.unpack(">BxxxI", data[:8])
        out.append((stream, data[8 : 8 + size]))
        data = data[8 + size :]
    return out


def test_exec_start_upgrades_and_takes_stdin_sent_behind_the_request(cli: DockerCLI, cloud: Cloud) -> None:
    cli.ok("run", "-d", "--name", "hijacked", "busybox", "sleep", "60")
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(cloud.docker_socket))
            config = {"Cmd": ["sh", "-c", "cat; echo err >&2"], "AttachStdin": True}
            body = json.dumps({**config, "AttachStdout": True, "AttachStderr": True}).encode()
            _request(s, "POST", "/v1.50/containers/hijacked/exec", body)
            head, created = _read_json(s)
            assert head.startswith(b"HTTP/1.1 201")
            exec_id = created["Id"]
            # Keep-alive: the same connection carries the start, and stdin follows in the same packet.
            start = json.dumps({"Detach": False, "Tty": False}).encode()
            headers = (
                f"POST /v1.50/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
                "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Length: {len(start)}\r\n\r\n"
            ).encode()
            s.sendall(headers + start + b"early stdin\n")
            head, rest = _read_head(s)
            assert head.startswith(b"HTTP/1.1 101 UPGRADED")
            assert b"application/vnd.docker.multiplexed-stream" in head
            s.shutdown(socket.SHUT_WR)  # end of stdin
            data = rest
            s.settimeout(20)
            while chunk := s.recv(65536):
                data += chunk
        frames = _frames(data)
        assert (1, b"early stdin\n") in frames and (2, b"err\n") in frames
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(cloud.docker_socket))
            _request(s, "GET", f"/v1.50/exec/{exec_id}/json")
            _, inspected = _read_json(s)
        assert inspected["ExitCode"] == 0 and inspected["Running"] is False
    finally:
        cli.run("rm", "-f", "hijacked")


def test_attach_with_logs_replays_then_follows(cli: DockerCLI, cloud: Cloud) -> None:
    cli.ok("run", "-d", "--name", "replayer", "busybox", "sh", "-c", "echo before; sleep 1.5; echo after")
    try:
        time.sleep(0.5)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(cloud.docker_socket))
            _request(s, "POST", "/v1.50/containers/replayer/attach?logs=1&stream=1&stdout=1", upgrade=True)
            head, data = _read_head(s)
            assert head.startswith(b"HTTP/1.1 101")
            s.settimeout(20)
            while chunk := s.recv(65536):
                data += chunk
        assert _frames(data) == [(1, b"before\n"), (1, b"after\n")]
    finally:
        cli.run("rm", "-f", "replayer")


def test_wait_answers_headers_before_the_container_ends(cli: DockerCLI, cloud: Cloud) -> None:
    cli.ok("create", "--name", "waited", "busybox", "sh", "-c", "exit 5")
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(cloud.docker_socket))
            _request(s, "POST", "/v1.50/containers/waited/wait?condition=next-exit")
            head, rest = _read_head(s)
            assert head.startswith(b"HTTP/1.1 200")
            cli.ok("start", "waited")
            s.settimeout(20)
            while b"}" not in rest:
                chunk = s.recv(4096)
                assert chunk, rest
                rest += chunk
        assert b'"StatusCode": 5' in rest
    finally:
        cli.run("rm", "-f", "waited")


def test_detach_keys_end_an_attach_and_leave_the_container_running(cli: DockerCLI, cloud: Cloud) -> None:
    cli.ok("run", "-dit", "--name", "detachable", "busybox", "sh")
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(cloud.docker_socket))
            path = "/v1.50/containers/detachable/attach?stream=1&stdin=1&stdout=1&stderr=1"
            _request(s, "POST", path, upgrade=True)
            head, data = _read_head(s)
            assert head.startswith(b"HTTP/1.1 101") and b"raw-stream" in head
            s.sendall(b"echo mark$((40+2))\n")
            s.settimeout(20)
            while b"mark42" not in data:
                data += s.recv(65536)
            s.sendall(b"\x10\x11")  # ctrl-p ctrl-q
            while chunk := s.recv(65536):  # the server ends the stream
                data += chunk
        assert json.loads(cli.ok("inspect", "detachable"))[0]["State"]["Running"] is True
    finally:
        cli.run("rm", "-f", "detachable")
