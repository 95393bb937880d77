"""Join tokens: ``atoll-join-`` + base64url of ``{"a": address, "f": CA fingerprint, "s": secret}``.

The address tells a new host where the controller's cluster listener is, the fingerprint lets it trust
that listener before it holds any certificate, and the secret (stored only as a hash, single-use, with an
expiry) proves to the controller that an operator invited it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass

from atoll.model.errors import InvalidInput

PREFIX = "atoll-join-"


@dataclass(frozen=True)
class JoinToken:
    address: str
    """``host:port`` of the controller's cluster listener."""
    ca_fingerprint: str
    secret: str

    def encode(self) -> str:
        body = json.dumps({"a": self.address, "f": self.ca_fingerprint, "s": self.secret}).encode()
        return PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")

    @property
    def secret_hash(self) -> str:
        return hash_secret(self.secret)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def decode(text: str) -> JoinToken:
    text = text.strip()
    if not text.startswith(PREFIX):
        raise InvalidInput(f"token: a join token starts with {PREFIX!r}")
    raw = text[len(PREFIX) :]
    try:
        body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        token = JoinToken(address=str(body["a"]), ca_fingerprint=str(body["f"]), secret=str(body["s"]))
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput("token: not a valid join token (damaged or truncated?)") from e
    if not token.ca_fingerprint.startswith("sha256:") or not token.secret or ":" not in token.address:
        raise InvalidInput("token: not a valid join token (missing address, fingerprint or secret)")
    return token
