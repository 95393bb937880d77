"""The Docker API over TLS with client certificates (dockerd's ``--tlsverify``), driven by the real
``docker`` CLI and docker-py: a good certificate works (also for the hijacked attach and exec), no
certificate, one from another CA, and plain HTTP are refused, and bad files stop ``atoll up``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.tls
import pytest
import requests
from docker.utils.socket import next_frame_header, read_exactly

from atoll.dockercerts import DockerCerts, make_docker_certs
from tests.docker.conftest import DOCKER, DockerCLI
from tests.e2e.cloud import ATOLL, Cloud, free_port


class TlsCLI(DockerCLI):
    """The CLI at the TLS port, with ``DOCKER_CERT_PATH``-style settings (or none)."""

    def __init__(self, host: str, cert_path: Path | None, verify: bool = True) -> None:
        super().__init__(host)
        self.cert_path = cert_path
        self.verify = verify

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.cert_path is not None:
            env["DOCKER_CERT_PATH"] = str(self.cert_path)
            if self.verify:
                env["DOCKER_TLS_VERIFY"] = "1"
        return env


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DockerCerts:
    return make_docker_certs(tmp_path_factory.mktemp("docker-certs"), ["localhost", "127.0.0.1"])


@pytest.fixture(scope="module")
def tls_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, certs: DockerCerts, tls_port: int) -> Iterator[Cloud]:
    if not os.path.exists(DOCKER):
        pytest.skip(f"the Docker CLI is not installed at {DOCKER}")
    c = Cloud(
        base=tmp_path_factory.mktemp("atoll-test-docker-tls"),
        extra_env={
            "ATOLL_DOCKER_TLS": f"127.0.0.1:{tls_port}",
            "ATOLL_DOCKER_TLS_CA": str(certs.ca),
            "ATOLL_DOCKER_TLS_CERT": str(certs.server_cert),
            "ATOLL_DOCKER_TLS_KEY": str(certs.server_key),
        },
    )
    with c.running():
        yield c


@pytest.fixture(scope="module")
def tls(cloud: Cloud, certs: DockerCerts, tls_port: int) -> TlsCLI:
    return TlsCLI(f"tcp://127.0.0.1:{tls_port}", certs.dir)


def test_cli_with_flags_runs_a_container(cloud: Cloud, certs: DockerCerts, tls_port: int) -> None:
    cli = DockerCLI(f"tcp://127.0.0.1:{tls_port}")
    flags = ["--tlsverify", "--tlscacert", str(certs.ca), "--tlscert", str(certs.client_cert)]
    out = cli.ok(*flags, "--tlskey", str(certs.client_key), "run", "--rm", "busybox", "echo", "hi")
    assert out == "hi\n"


def test_cli_with_cert_path_attaches_stdin_and_execs(tls: TlsCLI) -> None:
    # `run -i`: stdin ends with the client's TLS close_notify; the output must still come back.
    piped = tls.run(
        "run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done", input=b"line one\nline two\n"
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "line one\nline two\ndone\n"
    assert tls.run("run", "--rm", "busybox", "sh", "-c", "exit 7").returncode == 7
    tls.ok("run", "-d", "--name", "tls-exec", "busybox", "sleep", "60")
    try:
        assert tls.ok("exec", "tls-exec", "echo", "from exec") == "from exec\n"
        fed = tls.run("exec", "-i", "tls-exec", "sh", "-c", "wc -c", input=b"x" * 100_000)
        assert fed.returncode == 0, fed.stderr
        assert fed.stdout.strip() == "100000"
        assert tls.ok("logs", "tls-exec") == ""
    finally:
        tls.run("rm", "-f", "tls-exec")


def test_no_client_certificate_is_refused(tls: TlsCLI, certs: DockerCerts, tmp_path: Path) -> None:
    only_ca = tmp_path / "only-ca"
    only_ca.mkdir()
    (only_ca / "ca.pem").write_bytes(certs.ca.read_bytes())
    cli = DockerCLI(tls.host)
    proc = cli.run("--tls", "--tlscacert", str(certs.ca), "version", "--format", "{{.Server.Version}}")
    assert proc.returncode != 0
    assert "certificate required" in proc.stderr or "bad certificate" in proc.stderr, proc.stderr


def test_a_certificate_from_another_ca_is_refused(tls: TlsCLI, certs: DockerCerts, tmp_path: Path) -> None:
    other = make_docker_certs(tmp_path / "other", ["localhost", "127.0.0.1"])
    cli = DockerCLI(tls.host)
    flags = ["--tlsverify", "--tlscacert", str(certs.ca), "--tlscert", str(other.client_cert)]
    proc = cli.run(*flags, "--tlskey", str(other.client_key), "ps")
    assert proc.returncode != 0
    assert "unknown certificate authority" in proc.stderr or "bad certificate" in proc.stderr, proc.stderr


def test_plain_http_to_the_tls_port_gets_a_clear_answer(tls: TlsCLI) -> None:
    proc = DockerCLI(tls.host).run("version", "--format", "{{.Server.Version}}")
    assert proc.returncode != 0
    assert "Client sent an HTTP request to an HTTPS server" in proc.stderr, proc.stderr


def test_the_plain_listeners_stay_as_they_were(cloud: Cloud) -> None:
    assert DockerCLI(cloud.docker_host).ok("run", "--rm", "busybox", "echo", "unix") == "unix\n"


def test_docker_py_over_tls(tls: TlsCLI, certs: DockerCerts, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these override the session's CA (this machine sets them to the system bundle).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    config = docker.tls.TLSConfig(
        client_cert=(str(certs.client_cert), str(certs.client_key)), verify=str(certs.ca)
    )
    client = docker.DockerClient(base_url=tls.host, tls=config, version="auto", timeout=60)
    try:
        assert client.containers.run("busybox", "echo hi", remove=True) == b"hi\n"
        box = client.containers.run("busybox", "sleep 60", detach=True)
        try:
            code, out = box.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
            assert (code, out) == (0, (b"out\n", b"err\n"))
        finally:
            box.remove(force=True)
        # A hijacked attach with stdin, read the way docker-py's own tests do (frame by frame).
        cat = client.api.create_container("busybox", "cat", stdin_open=True)["Id"]
        try:
            sock = client.api.attach_socket(cat, params={"stdin": 1, "stdout": 1, "stream": 1})
            client.api.start(cat)
            sock.sendall(b"over tls\n")
            stream, size = next_frame_header(sock)
            assert (stream, read_exactly(sock, size)) == (1, b"over tls\n")
            sock.close()
        finally:
            client.api.remove_container(cat, force=True)
        no_cert = docker.APIClient(
            base_url=tls.host, tls=docker.tls.TLSConfig(verify=str(certs.ca)), version="1.45"
        )
        with pytest.raises(
            requests.exceptions.ConnectionError, match=r"(?i)certificate required|bad certificate"
        ):
            no_cert.ping()
        no_cert.close()
    finally:
        client.close()


def _up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ATOLL, "up"], env=env, capture_output=True, text=True, timeout=60)


def test_bad_tls_files_stop_atoll_up_naming_the_file(tmp_path: Path, certs: DockerCerts) -> None:
    base = Cloud(base=tmp_path)  # only its isolated settings: nothing is started
    tls = {
        "ATOLL_DOCKER_TLS": f"127.0.0.1:{free_port()}",
        "ATOLL_DOCKER_TLS_CA": str(certs.ca),
        "ATOLL_DOCKER_TLS_CERT": str(certs.server_cert),
        "ATOLL_DOCKER_TLS_KEY": str(certs.server_key),
    }
    missing = _up({**base.env, **tls, "ATOLL_DOCKER_TLS_CERT": str(tmp_path / "nope.pem")})
    assert missing.returncode == 1
    assert f"ATOLL_DOCKER_TLS_CERT: {tmp_path / 'nope.pem'}: no such file" in missing.stderr
    mismatched = _up({**base.env, **tls, "ATOLL_DOCKER_TLS_KEY": str(certs.client_key)})
    assert mismatched.returncode == 1
    assert f"{certs.client_key} is not the key of the certificate {certs.server_cert}" in mismatched.stderr
    not_a_ca = tmp_path / "garbage.pem"
    not_a_ca.write_text("not a certificate\n")
    garbage = _up({**base.env, **tls, "ATOLL_DOCKER_TLS_CA": str(not_a_ca)})
    assert garbage.returncode == 1
    assert f"ATOLL_DOCKER_TLS_CA: {not_a_ca}" in garbage.stderr
    assert not (tmp_path / "data").exists()  # stopped before anything was made


def test_docker_certs_command_writes_a_cert_path(tmp_path: Path) -> None:
    out = subprocess.run(
        [ATOLL, "docker-certs", str(tmp_path / "certs"), "--host", "127.0.0.1", "--host", "docker.example"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"DOCKER_CERT_PATH={tmp_path / 'certs'}" in out.stdout
    certs = DockerCerts(tmp_path / "certs")
    names = ["ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem", "cert.pem", "key.pem"]
    assert sorted(p.name for p in certs.dir.iterdir()) == sorted(names)
    assert {
        oct(certs.path(n).stat().st_mode & 0o777) for n in ("ca-key.pem", "server-key.pem", "key.pem")
    } == {"0o600"}
    for leaf in (certs.server_cert, certs.client_cert):
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(certs.ca), str(leaf)], capture_output=True, text=True
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(certs.server_cert)],
        capture_output=True,
        text=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:docker.example" in text
    # Again: the CA stays, the leaves are new.
    ca_before = certs.ca.read_bytes()
    cert_before = certs.client_cert.read_bytes()
    subprocess.run([ATOLL, "docker-certs", str(certs.dir)], check=True, capture_output=True, timeout=60)
    assert certs.ca.read_bytes() == ca_before and certs.client_cert.read_bytes() != cert_before


def test_cli_tty_over_tls(tls: TlsCLI) -> None:
    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed: no pty for the CLI")
    # `docker run -t` needs a terminal on the CLI's side: script(1) gives it one.
    command = f"{DOCKER} run -t --rm busybox sh -c 'tty; echo raw-stream'"
    proc = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        env=tls.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/dev/pts/" in proc.stdout and "raw-stream" in proc.stdout, proc.stdout
