"""Registry authentication: HTTP basic, and the ``WWW-Authenticate: Bearer`` token flow.

A request goes out with whatever we already hold for its scopes. On a 401 the challenge says what the
registry wants: ``Basic`` means our credentials on every request; ``Bearer realm=..,service=..`` means
fetching a token from the realm (with our credentials as basic auth, or anonymously) for the scopes of
the operation (``repository:NAME:pull`` or ``pull,push``) and retrying with it. Tokens are cached per
scope set for as long as they say (60 s when they don't). Credentials only ever go to the registry host
they belong to and to the realm it names.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable

import httpx

from atoll.agent.registry.challenge import Challenge, parse_challenges
from atoll.model.errors import RegistryAuthError, RegistryError
from atoll.model.registry import Credential

TOKEN_LIMIT = 1 << 20
DEFAULT_TOKEN_LIFETIME = 60.0
_EARLY = 10.0
"""Refresh tokens this many seconds before they expire, so none lapses mid-request."""


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


class Authenticator:
    def __init__(self, host: str, credential: Credential | None) -> None:
        self.host = host
        self._credential = credential
        self._basic = False
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}

    @property
    def has_credential(self) -> bool:
        return self._credential is not None

    def header(self, scopes: Iterable[str]) -> dict[str, str]:
        if self._basic and self._credential is not None:
            return {"Authorization": _basic(self._credential)}
        cached = self._tokens.get(tuple(sorted(set(scopes))))
        if cached is not None and cached[1] > time.monotonic():
            return {"Authorization": f"Bearer {cached[0]}"}
        return {}

    async def answer(self, http: httpx.AsyncClient, response: httpx.Response, scopes: Iterable[str]) -> None:
        """Act on a 401: set up what its challenge asks for, or raise if we can't give it."""
        challenges = parse_challenges(", ".join(response.headers.get_list("www-authenticate")))
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        if bearer is not None:
            await self._fetch_token(http, bearer, scopes)
            return
        if any(c.scheme == "basic" for c in challenges):
            if self._credential is None:
                raise RegistryAuthError(
                    f"{self.host}: authentication required: log in with `atoll login {self.host}`"
                )
            if self._basic:
                raise RegistryAuthError(f"{self.host}: the registry refused the stored credentials")
            self._basic = True
            return
        raise RegistryAuthError(f"{self.host}: unauthorized, and no usable WWW-Authenticate challenge")

    async def _fetch_token(
        self, http: httpx.AsyncClient, challenge: Challenge, scopes: Iterable[str]
    ) -> None:
        wanted = tuple(sorted(set(scopes)))
        asked = challenge.params.get("scope", "")
        params: dict[str, str | list[str]] = {"scope": sorted({*wanted, *filter(None, asked.split(" "))})}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        headers = {"Authorization": _basic(self._credential)} if self._credential else {}
        realm = challenge.params["realm"]
        try:
            resp = await http.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(f"{self.host}: token server {realm} unreachable: {exc}") from exc
        if resp.status_code in (401, 403):
            who = "the stored credentials were refused" if self._credential else "anonymous access refused"
            raise RegistryAuthError(f"{self.host}: token server {realm}: {who}")
        if resp.status_code != 200:
            raise RegistryError(f"{self.host}: token server {realm} answered {resp.status_code}")
        if len(resp.content) > TOKEN_LIMIT:
            raise RegistryError(f"{self.host}: token server {realm}: answer too large")
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token, lifetime = None, 0.0
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.host}: token server {realm} gave no token")
        expiry = time.monotonic() + max(lifetime - _EARLY, 1.0)
        self._tokens[wanted] = (token, expiry)


def _basic(credential: Credential | None) -> str:
    assert credential is not None
    raw = f"{credential.username}:{credential.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()
