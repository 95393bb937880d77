"""Fixtures for the dataplane's kernel tests.

Each test gets a "host": a network namespace of its own (``ip netns add``, named with the run's
prefix), in which the dataplane under test builds its bridges, veths and nftables tables. Traffic
stays between namespaces the test made. Teardown converges the dataplane to nothing, checks that it
left nothing in the host namespace or on disk, and deletes the namespace.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from atoll.agent.net.dataplane import HostNetwork, NetConfig
from atoll.agent.net.names import Names
from tests.prefix import NET_PREFIX, NFT_TABLE, RUN_PREFIX

from .helpers import Host


@pytest.fixture
def host() -> Iterator[Host]:
    h = Host(f"{RUN_PREFIX}-host-{secrets.token_hex(3)}")
    subprocess.run(["ip", "netns", "add", h.name], check=True)
    try:
        yield h
    finally:
        subprocess.run(["ip", "netns", "del", h.name], check=False)


@pytest.fixture
def names() -> Names:
    return Names(NET_PREFIX, NFT_TABLE)


@pytest.fixture
def netns_dir(tmp_path: Path) -> Path:
    return tmp_path / "netns"


@pytest.fixture
def dataplane(host: Host, names: Names, netns_dir: Path) -> Iterator[HostNetwork]:
    net = HostNetwork(NetConfig(names=names, netns_dir=netns_dir, host_netns=host.path))
    yield net
    asyncio.run(HostNetwork(net.config).sync([]))  # a fresh one: forgets nothing it did not see
    assert not {n for n in host.links() if n.startswith(NET_PREFIX)}, host.links()
    assert not host.nft_tables(), host.nft_tables()
    assert not netns_dir.exists() or not list(netns_dir.iterdir())
