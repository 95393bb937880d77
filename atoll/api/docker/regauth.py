"""``X-Registry-Auth``: the credentials a Docker client sends with one pull or push.

The header is base64url JSON (``{"username", "password", "auth", "serveraddress", "identitytoken"}``),
padding optional. The credential is used for that transfer only, on top of the project's stored logins
(``docker login`` / ``atoll login``), and is never kept. An empty object (what the CLI sends when it
has no login) means none; a header that does not decode is a 400 naming it.
"""

from __future__ import annotations

import base64
import binascii
import json

from atoll.api.docker.http import Request, bad_request
from atoll.model.registry import Credential

HEADER = "x-registry-auth"


def _decode(text: str) -> object:
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    return json.loads(raw)


def request_credential(req: Request) -> Credential | None:
    text = req.headers.get(HEADER, "").strip()
    if not text:
        return None
    try:
        data = _decode(text)
    except (binascii.Error, ValueError):
        raise bad_request("X-Registry-Auth: not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise bad_request("X-Registry-Auth: expected a JSON object")
    token = data.get("identitytoken") or data.get("IdentityToken")
    if isinstance(token, str) and token:
        return Credential("<token>", token)
    username = data.get("username") or data.get("Username") or ""
    password = data.get("password") or data.get("Password") or ""
    auth = data.get("auth") or data.get("Auth") or ""
    if not username and isinstance(auth, str) and auth:
        try:
            username, _, password = base64.b64decode(auth).decode().partition(":")
        except (binascii.Error, ValueError):
            raise bad_request("X-Registry-Auth: auth is not base64 user:password") from None
    if not isinstance(username, str) or not isinstance(password, str):
        raise bad_request("X-Registry-Auth: username and password must be strings")
    if not username:
        return None
    return Credential(username, password)
