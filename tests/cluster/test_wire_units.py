"""Unit tests of the wire's pure parts: join tokens, certificates, method shapes and error transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from atoll.model.errors import BadImage, Conflict, InvalidInput, NotFound, RuntimeFailure
from atoll.model.image import ImageConfig, ImageRecord
from atoll.model.instance import LogEntry
from atoll.model.ports import ControlPlane, HostAgent
from atoll.model.registry import Pulled, TransferEvent
from atoll.wire import frames, pki, tokens
from atoll.wire.errors import error_body, error_status, raise_error
from atoll.wire.shapes import decode_result, encode_result, method_shapes


def test_token_round_trip() -> None:
    token = tokens.JoinToken("10.0.0.1:7781", "sha256:" + "ab" * 32, tokens.new_secret())
    text = token.encode()
    assert text.startswith("atoll-join-") and "=" not in text
    assert tokens.decode(text) == token
    assert tokens.decode(f"  {text}\n") == token
    assert token.secret_hash == tokens.hash_secret(token.secret) != token.secret


@pytest.mark.parametrize(
    "text",
    [
        "",
        "atoll-join-",
        "atoll-join-!!!",
        "atoll-join-" + "eyJhIjogMX0",  # {"a": 1}: fields missing
        "join-abc",
        tokens.JoinToken("nohost", "sha256:x", "s").encode(),
        tokens.JoinToken("h:1", "md5:x", "s").encode(),
        tokens.JoinToken("h:1", "sha256:x", "").encode(),
    ],
)
def test_damaged_tokens_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^token: "):
        tokens.decode(text)


def test_issued_certificates_name_the_host_not_the_requester() -> None:
    ca_key, ca_cert = pki.make_ca()
    key = pki.new_key_pem()
    cert_pem = pki.issue(
        ca_key, ca_cert, pki.make_csr(key, "i-am-the-controller"), "host1", "host1.hosts.atoll"
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "host1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["host1.hosts.atoll"]
    assert cert.issuer == x509.load_pem_x509_certificate(ca_cert).subject
    assert pki.common_name_of(cert_pem) == "host1"
    assert pki.fingerprint(ca_cert).startswith("sha256:") and len(pki.fingerprint(ca_cert)) == 71
    assert pki.fingerprint(ca_cert) != pki.fingerprint(pki.make_ca()[1])


def test_a_bad_csr_is_refused() -> None:
    ca_key, ca_cert = pki.make_ca()
    with pytest.raises(InvalidInput, match=r"^csr: "):
        pki.issue(ca_key, ca_cert, b"not a csr", "h", "h.hosts.atoll")


def test_peer_common_name() -> None:
    assert pki.peer_common_name({"subject": ((("commonName", "abc"),),)}) == "abc"
    assert pki.peer_common_name(None) is None
    assert pki.peer_common_name({}) is None


def test_every_protocol_method_has_a_shape() -> None:
    agent, control = method_shapes(HostAgent), method_shapes(ControlPlane)
    assert {"create_instance", "logs", "exec", "import_images", "pull_image"} <= set(agent)
    assert "host_id" not in agent  # a property: local knowledge, not a call
    assert agent["logs"].kind == "stream" and agent["exec"].kind == "exec"
    assert agent["import_images"].body == "archive" and agent["import_images"].params == ()
    assert agent["build_image"].body == "rootfs_tar" and agent["build_image"].params == ("config", "created")
    assert set(control) >= {"assignments", "instance_started", "instance_exited", "heartbeat"}


def test_arguments_and_results_round_trip() -> None:
    shape = method_shapes(HostAgent)["logs"]
    wire = shape.encode_args({"instance_id": "i1", "follow": True})
    assert json.loads(wire) == {"instance_id": "i1", "follow": True, "tail": None, "since": ""}
    assert shape.decode_args(wire) == {"instance_id": "i1", "follow": True, "tail": None, "since": ""}
    entry = LogEntry("2024-01-01T00:00:00Z", "stderr", b"\x00\xff not utf-8\n", partial=True)
    assert decode_result(shape, encode_result(shape, entry)) == entry


def test_union_items_keep_their_type() -> None:
    shape = method_shapes(HostAgent)["pull_image"]
    record = ImageRecord(
        "sha256:" + "1" * 64, ["a:b"], ["sha256:" + "2" * 64], 5, "", "amd64", "linux", ImageConfig()
    )
    for item in (TransferEvent("Downloading", "abc", 1, 2), Pulled(record, "sha256:" + "3" * 64)):
        assert decode_result(shape, encode_result(shape, item)) == item


@pytest.mark.parametrize("error", [NotFound("n"), Conflict("c"), BadImage("b"), RuntimeFailure("r")])
def test_domain_errors_keep_their_class(error: Exception) -> None:
    with pytest.raises(type(error), match=str(error)) as caught:
        raise_error(error_body(error), "peer")
    assert type(caught.value) is type(error)
    assert error_status(error) in (400, 404, 409, 500)


def test_other_errors_name_the_peer() -> None:
    with pytest.raises(RuntimeFailure, match=r"^host-9: ValueError: boom$"):
        raise_error(error_body(ValueError("boom")), "host-9")


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [1, 3, 7, 4096])
async def test_frames_survive_any_network_chunking(size: int) -> None:
    payloads = [b"", b"a", b"\x00" * 1000, bytes(range(256))]
    wire = b"".join(frames.frame(frames.DATA, p) for p in payloads) + frames.frame(frames.END)
    got = [f async for f in frames.read_frames(_chunks(wire, size))]
    assert got == [(frames.DATA, p) for p in payloads] + [(frames.END, b"")]


def test_byte_streams_use_frames() -> None:
    assert method_shapes(HostAgent)["export_image"].raw_bytes
    assert not method_shapes(HostAgent)["logs"].raw_bytes


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
