"""A thin, typed layer over pyroute2's netlink calls: one function per thing the dataplane does.

Everything here is synchronous and acts in the network namespace of the calling thread (see
``netns.run_in``). pyroute2's synchronous ``IPRoute`` runs its own event loop, so it must never be used
from the agent's loop thread; the dataplane calls these from worker threads only.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from atoll.agent.net import linkdump
from atoll.agent.net.linkdump import Link as Link  # the record every caller gets (re-exported)
from atoll.agent.net.names import alias_id
from atoll.model.errors import RuntimeFailure

Netlink = Any
"""pyroute2's ``IPRoute`` (untyped)."""


@contextmanager
def netlink() -> Iterator[Netlink]:
    """An rtnetlink socket in the calling thread's network namespace."""
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _link(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return Link(
        index=int(msg["index"]),
        name=str(msg.get_attr("IFLA_IFNAME")),
        kind=str(kind or ""),
        master=int(msg.get_attr("IFLA_MASTER") or 0),
        alias=str(msg.get_attr("IFLA_IFALIAS") or ""),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        flags=int(msg["flags"]),
    )


def links(ipr: Netlink) -> dict[str, Link]:
    """Every link of ``ipr``'s namespace, which is the calling thread's: dumped without pyroute2's
    message objects (see ``linkdump``)."""
    return {link.name: link for link in linkdump.dump()}


def link(ipr: Netlink, name: str) -> Link | None:
    found = ipr.link_lookup(ifname=name)
    if not found:
        return None
    return _link(ipr.get_links(found[0])[0])


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except NetlinkError as exc:
        raise RuntimeFailure(f"{what}: {os.strerror(exc.code)}") from exc


call = _call
"""A netlink call whose error becomes a ``RuntimeFailure`` saying ``what`` failed."""


def set_addresses(ipr: Netlink, device: str, wanted: set[tuple[str, int]], *, mtu: int) -> set[str]:
    """``device`` with exactly these IPv4 addresses (address, prefix length), up. Idempotent; returns the
    addresses it added."""
    found = ipr.link_lookup(ifname=device)
    if not found:
        raise RuntimeFailure(f"{device} is missing")
    index = found[0]
    have = {(m.get_attr("IFA_ADDRESS"), int(m["prefixlen"])) for m in ipr.get_addr(index=index, family=2)}
    for address, prefix_len in sorted(have - wanted):
        _call(
            f"remove {address} from {device}",
            ipr.addr,
            "del",
            index=index,
            address=address,
            prefixlen=prefix_len,
        )
    for address, prefix_len in sorted(wanted - have):
        _call(
            f"add {address}/{prefix_len} to {device}",
            ipr.addr,
            "add",
            index=index,
            address=address,
            prefixlen=prefix_len,
        )
    _call(f"set up {device}", ipr.link, "set", index=index, mtu=mtu, state="up")
    return {address for address, _ in wanted - have}


def wait_running(ipr: Netlink, names: Iterable[str], timeout: float = 3.0) -> None:
    """Wait until these links have their carrier (a bridge forwards on a new port only then, and the
    kernel reports a veth's carrier asynchronously, up to a second late). Gives up quietly."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            found = ipr.link_lookup(ifname=name)
            if not found or ipr.get_links(found[0])[0].get_attr("IFLA_OPERSTATE") == "UP":
                pending.discard(name)
        if pending:
            time.sleep(0.02)


def add_bridge(ipr: Netlink, name: str, *, mac: str, mtu: int, alias: str) -> Link:
    """A bridge with a fixed MAC (so it does not change as ports come and go), STP off, up."""
    _call(f"create bridge {name}", ipr.link, "add", ifname=name, kind="bridge", address=mac, mtu=mtu)
    created = link(ipr, name)
    assert created is not None
    _call(f"set up bridge {name}", ipr.link, "set", index=created.index, ifalias=alias, state="up")
    return created


def add_veth(
    ipr: Netlink, host: str, *, peer: str, peer_netns: Path, peer_mac: str, mtu: int, alias: str
) -> Link:
    """A veth pair whose peer is created directly inside the namespace at ``peer_netns`` (so it never
    appears on the host under a temporary name)."""
    fd = os.open(peer_netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _call(
            f"create veth {host}",
            ipr.link,
            "add",
            ifname=host,
            kind="veth",
            mtu=mtu,
            peer={"ifname": peer, "net_ns_fd": fd, "address": peer_mac, "mtu": mtu},
        )
    finally:
        os.close(fd)
    created = link(ipr, host)
    assert created is not None
    _call(f"set alias of {host}", ipr.link, "set", index=created.index, ifalias=alias)
    return created


def set_up(ipr: Netlink, link: Link) -> None:
    _call(f"set up {link.name}", ipr.link, "set", index=link.index, state="up")


def attach(ipr: Netlink, port: Link, bridge: Link, mtu: int) -> None:
    """Enslave ``port`` to ``bridge`` and bring it up."""
    _call(
        f"attach {port.name} to {bridge.name}",
        ipr.link,
        "set",
        index=port.index,
        master=bridge.index,
        mtu=mtu,
    )
    _call(f"set up {port.name}", ipr.link, "set", index=port.index, state="up")


def delete(ipr: Netlink, name: str, *, owner: str | None = None) -> bool:
    """Delete a link (a veth takes its peer with it). Idempotent; True if it existed.

    With ``owner``, only a link whose alias names that id (see ``names.alias_id``) is deleted."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        return False
    if owner is not None and alias_id(_link(ipr.get_links(found[0])[0]).alias) != owner:
        return False
    try:
        ipr.link("del", index=found[0])
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise RuntimeFailure(f"delete {name}: {os.strerror(exc.code)}") from exc
    return True


def configure_nic(
    ipr: Netlink, device: str, *, address: str, prefix_len: int, mtu: int, gateway: str, default_route: bool
) -> None:
    """Inside an instance's namespace: loopback up; ``device`` with exactly this address, up; the default
    route through ``gateway`` (when it has one and is the instance's primary NIC). Idempotent.

    ``arp_notify`` makes the kernel announce the address (gratuitous ARP) when the device comes up, so
    neighbours drop an ARP entry that a previous holder of the address left in their caches."""
    lo = ipr.link_lookup(ifname="lo")
    if lo:
        _call("set up lo", ipr.link, "set", index=lo[0], state="up")
    found = ipr.link_lookup(ifname=device)
    if not found:
        raise RuntimeFailure(f"{device} is missing in the instance's network namespace")
    index = found[0]
    write_sysctl(f"net/ipv4/conf/{device}/arp_notify", "1")  # before it comes up: see above
    set_addresses(ipr, device, {(address, prefix_len)}, mtu=mtu)
    if gateway and default_route:
        _call(
            f"default route via {gateway}", ipr.route, "replace", dst="0.0.0.0/0", gateway=gateway, oif=index
        )


def write_sysctl(key: str, value: str) -> None:
    """``/proc/sys/<key>`` in the calling thread's network namespace."""
    try:
        Path("/proc/sys", key).write_text(value)
    except OSError as exc:
        raise RuntimeFailure(f"sysctl {key}={value}: {exc.strerror}") from exc


def disable_port(ipr: Netlink, name: str) -> None:
    """Take a link off its bridge's forwarding (STP state "disabled": nothing is forwarded to or from
    it) without deleting it or taking it down, which both wait for the kernel's RCU grace periods.
    Idempotent; a missing link or one on no bridge is left alone."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        return
    try:
        ipr.brport("set", index=found[0], state=0)
    except NetlinkError as exc:
        if exc.code not in (errno.ENODEV, errno.EINVAL, errno.EOPNOTSUPP):
            raise RuntimeFailure(f"disable bridge port {name}: {os.strerror(exc.code)}") from exc


@dataclass(frozen=True)
class Route:
    """How the host's routes reach an address: by which device, via which nexthop, from which source."""

    ifindex: int
    nexthop: str
    """The gateway, or the address itself when it is on the link."""
    source: str
    """The source address the kernel would pick ("" if it names none)."""


def route_to(ipr: Netlink, destination: str) -> Route | None:
    """The route the host would use to ``destination``, or None (no route)."""
    try:
        answer = ipr.route("get", dst=destination)
    except NetlinkError:
        return None
    for msg in answer:
        oif = msg.get_attr("RTA_OIF")
        if oif:
            gateway = msg.get_attr("RTA_GATEWAY") or destination
            return Route(int(oif), str(gateway), str(msg.get_attr("RTA_PREFSRC") or ""))
    return None
