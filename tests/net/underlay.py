"""Two test "hosts" (network namespaces named with the run's prefix) joined by a veth "underlay":
``underlay`` in each, 192.168.77.1/24 and .2/24, up. Deleting the namespaces removes everything in them."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.prefix import RUN_PREFIX

from .helpers import Host

UNDERLAY = ("192.168.77.1", "192.168.77.2")


@contextmanager
def underlay_hosts() -> Iterator[tuple[Host, Host]]:
    a, b = (Host(f"{RUN_PREFIX}-{tag}-{secrets.token_hex(3)}") for tag in ("ha", "hb"))
    try:
        for host in (a, b):
            subprocess.run(["ip", "netns", "add", host.name], check=True)
            host.run("ip", "link", "set", "lo", "up")
        subprocess.run(
            [
                "ip",
                "-n",
                a.name,
                "link",
                "add",
                "underlay",
                "type",
                "veth",
                "peer",
                "name",
                "underlay",
                "netns",
                b.name,
            ],
            check=True,
        )
        for host, address in zip((a, b), UNDERLAY, strict=True):
            host.run("ip", "addr", "add", f"{address}/24", "dev", "underlay")
            host.run("ip", "link", "set", "underlay", "up")
        yield a, b
    finally:
        for host in (a, b):
            subprocess.run(["ip", "netns", "del", host.name], check=False)
