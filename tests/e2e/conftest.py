from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    c = Cloud(base=tmp_path_factory.mktemp("atoll-test-cloud"))
    with c.running():
        yield c


@pytest.fixture
def fresh_cloud(tmp_path: Path) -> Iterator[Cloud]:
    c = Cloud(base=tmp_path / "atoll-test-cloud")
    c.base.mkdir()
    with c.running():
        yield c
