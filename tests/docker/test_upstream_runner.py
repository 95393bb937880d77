"""The parts of the docker-py upstream runner that CI can check without the upstream checkout (PyPI's
sdist of `docker` has no tests): the exclusion list, the stand-in images, the X-Registry-Auth decoding."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from atoll.api.docker.http import DockerError, Request
from atoll.api.docker.regauth import request_credential
from tests.docker.upstream import read_exclusions, stand_ins


def test_every_exclusion_names_a_test_and_a_reason() -> None:
    exclusions = read_exclusions()
    assert len(exclusions) == len({e.nodeid for e in exclusions})
    for e in exclusions:
        assert e.nodeid.startswith("tests/integration/") and "::" in e.nodeid
        assert len(e.reason) > 10


def test_a_line_without_a_reason_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "excluded.txt"
    bad.write_text("tests/integration/api_container_test.py::X\n")
    with pytest.raises(ValueError, match=r"excluded\.txt:1"):
        read_exclusions(bad)


def test_stand_ins_are_distinct_images(tmp_path: Path) -> None:
    images = stand_ins(tmp_path)
    assert set(images) >= {"library/alpine:3.10", "library/busybox:latest", "library/hello-world:latest"}
    assert len({img.id for img in images.values()}) == len(images)


def _req(header: str | None) -> Request:
    headers = {"x-registry-auth": header} if header is not None else {}
    return Request(method="POST", path="/images/create", query={}, headers=headers)


def _b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_x_registry_auth_decoding() -> None:
    assert request_credential(_req(None)) is None
    assert request_credential(_req(_b64({}))) is None  # the CLI's "no login"
    cred = request_credential(_req(_b64({"username": "u", "password": "p", "serveraddress": "r"})))
    assert cred is not None and (cred.username, cred.secret) == ("u", "p")
    cred = request_credential(_req(_b64({"auth": base64.b64encode(b"me:pw:x").decode()})))
    assert cred is not None and (cred.username, cred.secret) == ("me", "pw:x")
    cred = request_credential(_req(_b64({"identitytoken": "tok"})))
    assert cred is not None and (cred.username, cred.secret) == ("<token>", "tok")
    assert "pw" not in repr(cred)
    with pytest.raises(DockerError, match="X-Registry-Auth"):
        request_credential(_req("%%%"))
    with pytest.raises(DockerError, match="X-Registry-Auth"):
        request_credential(_req(_b64(["not", "an", "object"])))
