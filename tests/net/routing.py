"""Helpers of the router tests on one host (test_routers.py) and across two (test_router_cluster.py):
router legs, the "outside" namespace at the far end of a host's uplink, and what the outside sees."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from atoll.model.routing import RouterLeg
from tests.prefix import RUN_PREFIX

from .helpers import Host, in_netns, new_id

OUTSIDE_IP = "203.0.113.1"
UPLINK = "uplink0"


def leg(network_id: str, ip: str, *, prefix_len: int = 24, uplink: str = "") -> RouterLeg:
    mac = "02:a7:" + ":".join(secrets.token_hex(1) for _ in range(4))
    return RouterLeg(
        port_id=new_id(), network_id=network_id, mac=mac, ip=ip, prefix_len=prefix_len, uplink=uplink
    )


@contextlib.contextmanager
def outside_of(host: Host) -> Iterator[Host]:
    """The outside world: a namespace holding 203.0.113.1/24 at the far end of ``host``'s uplink. It
    has no other route, so it can only answer addresses of 203.0.113.0/24. Deleted afterwards (and the
    uplink with it: a veth goes when its peer's namespace does)."""
    out = Host(f"{RUN_PREFIX}-out-{secrets.token_hex(3)}")
    subprocess.run(["ip", "netns", "add", out.name], check=True)
    try:
        host.run("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "ext0", "netns", out.name)
        host.run("ip", "link", "set", UPLINK, "up")
        out.run("ip", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "ext0")
        out.run("ip", "link", "set", "ext0", "up")
        out.run("ip", "link", "set", "lo", "up")
        yield out
    finally:
        subprocess.run(["ip", "netns", "del", out.name], check=False)


def source_seen_outside(outside: Host, sender: Path) -> str:
    """The source address with which a UDP datagram from the namespace at ``sender`` reaches the outside."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", outside.name, "python3", "-c",
         "import socket; s = socket.socket(2, 2); s.bind(('0.0.0.0', 9999)); s.settimeout(10);"
         " print(s.recvfrom(100)[1][0])"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while listener.poll() is None and time.monotonic() < deadline:
            send = f"import socket; socket.socket(2, 2).sendto(b'x', ('{OUTSIDE_IP}', 9999))"
            in_netns(sender, "python3", "-c", send)
            time.sleep(0.1)
        out, _ = listener.communicate(timeout=10)
        return out.strip()
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
