"""Test certificates, made with the ``openssl`` command: a CA with a server certificate for 127.0.0.1,
and a self-signed key pair for signing registry tokens."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, input=input).stdout


@dataclass(frozen=True)
class ServerCerts:
    ca: Path
    cert: Path
    key: Path


def make_server_certs(root: Path) -> ServerCerts:
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = root / "ca.key", root / "ca.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
             "-days", "2", "-subj", "/CN=atoll test CA")  # fmt: skip
    key, csr, crt = root / "server.key", root / "server.csr", root / "server.crt"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1")  # fmt: skip
    ext = root / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(crt), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ServerCerts(ca_crt, crt, key)


@dataclass(frozen=True)
class TokenKey:
    key: Path
    cert: Path
    kid: str
    """libtrust's key id of the public key: how the registry finds the key that signed a token."""

    def sign(self, payload: bytes) -> bytes:
        return _openssl("dgst", "-sha256", "-sign", str(self.key), input=payload)


def make_token_key(root: Path) -> TokenKey:
    root.mkdir(parents=True, exist_ok=True)
    key, crt = root / "token.key", root / "token.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
             "-days", "2", "-subj", "/CN=atoll test token issuer")  # fmt: skip
    der = _openssl("pkey", "-in", str(key), "-pubout", "-outform", "DER")
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    kid = ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))
    return TokenKey(key, crt, kid)
