"""A tiny token server for the registry's ``token`` auth: the realm of the ``WWW-Authenticate: Bearer``
flow. It grants ``pull`` to anyone, and ``push`` only to a user who sends the right password; tokens
are JWTs signed (RS256, with ``openssl``) by a key the registry trusts."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.registry.certs import TokenKey

SERVICE = "atoll-test-registry"
ISSUER = "atoll-test-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class TokenServer:
    key: TokenKey
    users: dict[str, str]
    port: int = 0
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    """Query of each token request, and who asked (``user``)."""

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_config(self) -> dict[str, str]:
        return {
            "realm": self.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(self.key.cert),
        }

    def token(self, subject: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.key.kid}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        return f"{signing_input}.{_b64(self.key.sign(signing_input.encode()))}"

    def answer(self, query: dict[str, list[str]], authorization: str) -> tuple[int, dict[str, object]]:
        user = ""
        if authorization.startswith("Basic "):
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.users.get(name) != password:
                return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
            user = name
        self.requests.append({**query, "user": [user]})
        access: list[dict[str, object]] = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            granted = [a for a in actions.split(",") if a == "pull" or (a == "push" and user)]
            access.append({"type": kind, "name": name, "actions": granted})
        return 200, {"token": self.token(user or "anonymous", access), "expires_in": 300}


@contextlib.contextmanager
def running_token_server(key: TokenKey, users: dict[str, str]) -> Iterator[TokenServer]:
    server_state = TokenServer(key, users)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            status, body = server_state.answer(query, self.headers.get("Authorization", ""))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
