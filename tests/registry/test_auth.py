"""Authenticated registries: htpasswd basic auth, and the bearer token flow with a real token config."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.registry.client import RegistryClient
from atoll.agent.registry.service import Registries
from atoll.model.errors import RegistryAuthError
from atoll.model.registry import Credential
from tests.registry.certs import make_token_key
from tests.registry.helpers import image_of, insecure, pulled, pushed, random_layer, store_is_empty
from tests.registry.server import Registry, running_registry, upload
from tests.registry.tokens import TokenServer, running_token_server

pytestmark = pytest.mark.anyio

ALICE = Credential("alice", "s3cret")


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "basic", htpasswd=("alice", "s3cret")) as reg:
        yield reg


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Registry, TokenServer]]:
    key = make_token_key(tmp_path / "token-key")
    with (
        running_token_server(key, {"alice": "s3cret"}) as tokens,
        running_registry(tmp_path / "token", token=tokens.registry_config()) as reg,
    ):
        yield reg, tokens


async def test_basic_auth_refuses_without_login_and_works_with_it(
    basic_registry: Registry, store: ImageStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    image = image_of(random_layer("private"))
    upload(basic_registry, "team/private", "1", image)
    ref = f"{basic_registry.host}/team/private:1"
    regs = Registries(store, insecure(basic_registry.host))
    try:
        with pytest.raises(RegistryAuthError, match="atoll login"):
            await pulled(regs.pull(ref, {}))
        with pytest.raises(RegistryAuthError, match="refused"):
            await pulled(regs.pull(ref, {basic_registry.host: Credential("alice", "wrong")}))
        assert store_is_empty(store)
        with pytest.raises(RegistryAuthError):
            await regs.login(basic_registry.host, Credential("alice", "wrong"))
        await regs.login(basic_registry.host, ALICE)
        result, _ = await pulled(regs.pull(ref, {basic_registry.host: ALICE}))
        assert result.record.id == image.id
    finally:
        await regs.close()
    # credentials are never logged, in clear or as the Basic header's base64 (httpx logs at DEBUG)
    basic = base64.b64encode(b"alice:s3cret").decode()
    assert caplog.records
    assert not [r for r in caplog.records if "s3cret" in r.getMessage() or basic in r.getMessage()]


async def test_bearer_token_flow_anonymous_pull_and_authenticated_push(
    token_registry: tuple[Registry, TokenServer], store: ImageStore
) -> None:
    reg, tokens = token_registry
    image = image_of(random_layer("tok"))
    # seed the registry through the token flow by hand, as a user with push rights
    token = tokens.token("alice", [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
    seeder = Registry(reg.base, reg.port, bearer=token)
    with seeder.http() as client:
        assert client.get("/v2/").status_code == 200
    upload(seeder, "team/app", "1", image)

    regs = Registries(store, insecure(reg.host))
    try:
        result, _ = await pulled(regs.pull(f"{reg.host}/team/app:1", {}))  # anonymous token
        assert result.record.id == image.id
        asked = tokens.requests[-1]
        assert asked["scope"] == ["repository:team/app:pull"] and asked["user"] == [""]
        assert asked["service"] == ["atoll-test-registry"]

        with pytest.raises(RegistryAuthError):
            await pushed(regs.push(image.id, f"{reg.host}/team/copy:1", {}))
        with pytest.raises(RegistryAuthError, match="refused"):
            await regs.login(reg.host, Credential("alice", "wrong"))
        await regs.login(reg.host, ALICE)
        done, _ = await pushed(regs.push(image.id, f"{reg.host}/team/copy:1", {reg.host: ALICE}))
        assert tokens.requests[-1]["user"] == ["alice"]
        assert done.digest.startswith("sha256:")
    finally:
        await regs.close()


@pytest.mark.parametrize(
    ("method", "processes"), [("pull_layer", True), ("blob_stream", False)], ids=["process", "thread"]
)
async def test_a_token_lapsing_before_a_layer_download_is_renewed_from_the_download_thread(
    token_registry: tuple[Registry, TokenServer],
    store: ImageStore,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    processes: bool,
) -> None:
    """The worker process (or thread) meets a 401; the event loop fetches a fresh token for it."""
    reg, tokens = token_registry
    image = image_of(random_layer("a"), random_layer("b"))
    token = tokens.token("alice", [{"type": "repository", "name": "team/lapse", "actions": ["pull", "push"]}])
    upload(Registry(reg.base, reg.port, bearer=token), "team/lapse", "1", image)
    original = getattr(RegistryClient, method)

    def forgetful(self: RegistryClient, *args: Any, **kwargs: Any) -> Any:
        self.auth._tokens.clear()  # as if the token had expired: the download meets a 401
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, method, forgetful)
    regs = Registries(store, insecure(reg.host, worker_processes=processes))
    try:
        before = len(tokens.requests)
        result, _ = await pulled(regs.pull(f"{reg.host}/team/lapse:1", {}))
    finally:
        await regs.close()
    assert result.record.id == image.id
    assert len(tokens.requests) - before >= 2  # the manifest's token, then at least one renewal
