"""Certificates for the Docker listener's TLS (docs/docker.md, "TLS"): a CA, a server certificate and
a client certificate, in the file names Docker's own guide uses, so that one directory serves both ends:

- ``ca.pem``, ``ca-key.pem``: the CA (its key stays with whoever issues certificates);
- ``server-cert.pem``, ``server-key.pem``: ``ATOLL_DOCKER_TLS_CERT`` / ``ATOLL_DOCKER_TLS_KEY``;
- ``cert.pem``, ``key.pem`` (with ``ca.pem``): a client's ``DOCKER_CERT_PATH``.

An existing CA in the directory is reused, so running it again issues fresh server and client
certificates that the same clients and servers keep trusting. Keys are ECDSA P-256 (the cluster's,
``atoll.wire.pki``), which the Docker CLI, docker-py and OpenSSL all take.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from atoll.wire.pki import CERT_DAYS, make_ca, new_key_pem

CA = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server-cert.pem"
SERVER_KEY = "server-key.pem"
CLIENT_CERT = "cert.pem"
CLIENT_KEY = "key.pem"


@dataclass(frozen=True)
class DockerCerts:
    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def ca(self) -> Path:
        return self.dir / CA

    @property
    def server_cert(self) -> Path:
        return self.dir / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.dir / SERVER_KEY

    @property
    def client_cert(self) -> Path:
        return self.dir / CLIENT_CERT

    @property
    def client_key(self) -> Path:
        return self.dir / CLIENT_KEY


def _private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an ECDSA key")
    return key


def _subject_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_leaf(
    ca_key_pem: bytes, ca_cert_pem: bytes, common_name: str, *, server_hosts: list[str] | None = None
) -> tuple[bytes, bytes]:
    """A new key and its certificate signed by the CA: (key PEM, cert PEM). With ``server_hosts`` it
    is a server's (those names and addresses as subject alternative names), else a client's."""
    key_pem = new_key_pem()
    key = _private_key(key_pem)
    ca_key = _private_key(ca_key_pem)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts is not None else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server_hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_subject_names(server_hosts)), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    if private:
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
    path.write_bytes(data)


def make_docker_certs(directory: Path, hosts: list[str], client_name: str = "docker-client") -> DockerCerts:
    """Write (or reuse) the CA, then a server certificate for ``hosts`` and a client certificate."""
    certs = DockerCerts(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_path, ca_key_path = certs.ca, certs.path(CA_KEY)
    if ca_path.exists() and ca_key_path.exists():
        ca_key_pem, ca_pem = ca_key_path.read_bytes(), ca_path.read_bytes()
    else:
        ca_key_pem, ca_pem = make_ca("Atoll Docker API CA")
        _write(ca_key_path, ca_key_pem, private=True)
        _write(ca_path, ca_pem)
    key, cert = issue_leaf(ca_key_pem, ca_pem, hosts[0] if hosts else "atoll", server_hosts=hosts)
    _write(certs.server_key, key, private=True)
    _write(certs.server_cert, cert)
    key, cert = issue_leaf(ca_key_pem, ca_pem, client_name)
    _write(certs.client_key, key, private=True)
    _write(certs.client_cert, cert)
    return certs
