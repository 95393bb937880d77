"""What real registries won't serve, from a fake one: oversized and schema-1 manifests, retries."""

from __future__ import annotations

import json

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.registry.service import Registries
from atoll.model.errors import BadImage, RegistryError
from tests.images import factory
from tests.registry.helpers import insecure, pulled, store_is_empty
from tests.registry.static import StaticRegistry

pytestmark = pytest.mark.anyio

M = "/v2/team/app/manifests/1"


async def _pull(store: ImageStore, fake: StaticRegistry, max_attempts: int = 5) -> None:
    regs = Registries(store, insecure(fake.host, max_attempts=max_attempts))
    try:
        await pulled(regs.pull(f"{fake.host}/team/app:1", {}))
    finally:
        await regs.close()


async def test_an_oversized_manifest_is_refused(store: ImageStore) -> None:
    big = b"{" + b" " * (5 << 20) + b"}"
    headers = {"Content-Type": factory.OCI_MANIFEST}
    async with StaticRegistry({"/v2/": (200, {}, b""), M: (200, headers, big)}) as fake:
        with pytest.raises(BadImage, match="limit"):
            await _pull(store, fake)
    assert store_is_empty(store)


async def test_a_schema1_manifest_is_an_unsupported_media_type(store: ImageStore) -> None:
    schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    body = json.dumps({"schemaVersion": 1, "name": "team/app", "tag": "1", "fsLayers": []}).encode()
    async with StaticRegistry({"/v2/": (200, {}, b""), M: (200, {"Content-Type": schema1}, body)}) as fake:
        with pytest.raises(BadImage, match="unsupported manifest media type"):
            await _pull(store, fake)
    assert store_is_empty(store)


async def test_5xx_answers_are_retried_with_backoff(store: ImageStore) -> None:
    busy: tuple[int, dict[str, str], bytes] = (
        503,
        {},
        b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}',
    )
    async with StaticRegistry({"/v2/": (200, {}, b""), M: [busy, busy, (404, {}, b"")]}) as fake:
        with pytest.raises(Exception, match="manifest unknown"):
            await _pull(store, fake)
        assert fake.hits[M] == 3
    async with StaticRegistry({"/v2/": (200, {}, b""), M: busy}) as fake:
        with pytest.raises(RegistryError, match="503"):
            await _pull(store, fake, max_attempts=2)
        assert fake.hits[M] == 2
