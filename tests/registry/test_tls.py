"""TLS: verified by default, trusted through a per-registry CA file, or skipped by explicit opt-in."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.agent.images import ImageStore
from atoll.agent.registry.options import RegistryOptions
from atoll.agent.registry.service import Registries
from atoll.model.errors import RegistryError
from tests.registry.certs import make_server_certs
from tests.registry.helpers import image_of, pulled, random_layer, store_is_empty
from tests.registry.server import Registry, running_registry, upload

pytestmark = pytest.mark.anyio


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[Registry]:
    certs = make_server_certs(tmp_path / "certs")
    with running_registry(tmp_path / "tls", tls=(certs.ca, certs.cert, certs.key)) as reg:
        yield reg


async def _pull(store: ImageStore, options: RegistryOptions, ref: str) -> str:
    regs = Registries(store, options)
    try:
        result, _ = await pulled(regs.pull(ref, {}))
        return result.record.id
    finally:
        await regs.close()


async def test_tls_needs_the_registry_ca(tls_registry: Registry, store: ImageStore, tmp_path: Path) -> None:
    image = image_of(random_layer("tls"))
    upload(tls_registry, "team/tls", "1", image)
    ref = f"{tls_registry.host}/team/tls:1"
    ca_dir = tmp_path / "certs.d"

    with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
        await _pull(store, RegistryOptions(ca_dir=ca_dir, max_attempts=1), ref)
    assert store_is_empty(store)

    (ca_dir / tls_registry.host).mkdir(parents=True)
    assert tls_registry.ca is not None
    shutil.copy(tls_registry.ca, ca_dir / tls_registry.host / "ca.crt")
    assert await _pull(store, RegistryOptions(ca_dir=ca_dir), ref) == image.id


async def test_insecure_opt_in_skips_verification(tls_registry: Registry, store: ImageStore) -> None:
    image = image_of(random_layer("insecure"))
    upload(tls_registry, "team/insecure", "1", image)
    options = RegistryOptions(insecure=frozenset({tls_registry.host}), ca_dir=Path("/nonexistent"))
    assert await _pull(store, options, f"{tls_registry.host}/team/insecure:1") == image.id


async def test_plain_http_needs_the_insecure_opt_in(registry: Registry, store: ImageStore) -> None:
    upload(registry, "team/plain", "1", image_of(random_layer("plain")))
    with pytest.raises(RegistryError, match="unreachable"):
        await _pull(store, RegistryOptions(max_attempts=1), f"{registry.host}/team/plain:1")
