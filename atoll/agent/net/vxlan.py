"""A thin, typed layer over pyroute2 for VXLAN devices and their forwarding entries (``bridge fdb ...
self``). Synchronous, in the calling thread's network namespace, like ``netlink``."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import flags as nd_flags
from pyroute2.netlink.rtnl.ndmsg import states as nd_states

from atoll.agent.net.netlink import Link, Netlink, link
from atoll.model.errors import RuntimeFailure

FLOOD_MAC = "00:00:00:00:00:00"
"""The all-zero entry: a copy of every broadcast, multicast and unknown-unicast frame goes to its ``dst``."""
_STATIC = nd_states["permanent"] | nd_states["noarp"]


@dataclass(frozen=True)
class VxlanInfo:
    vni: int
    port: int
    local: str
    learning: bool


@dataclass(frozen=True, order=True)
class Entry:
    """A forwarding entry of a VXLAN device: frames for ``mac`` are tunnelled to the host at ``dst``."""

    mac: str
    dst: str


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except NetlinkError as exc:
        raise RuntimeFailure(f"{what}: {os.strerror(exc.code)}") from exc


def info(ipr: Netlink, index: int) -> VxlanInfo | None:
    """The VXLAN settings of the device at ``index``, or None if it is not a VXLAN device."""
    msg = ipr.get_links(index)[0]
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    if linkinfo is None or linkinfo.get_attr("IFLA_INFO_KIND") != "vxlan":
        return None
    data = linkinfo.get_attr("IFLA_INFO_DATA")
    return VxlanInfo(
        vni=int(data.get_attr("IFLA_VXLAN_ID") or 0),
        port=int(data.get_attr("IFLA_VXLAN_PORT") or 0),
        local=str(data.get_attr("IFLA_VXLAN_LOCAL") or ""),
        learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")),
    )


def add(ipr: Netlink, name: str, *, vni: int, port: int, local: str, mtu: int, alias: str) -> Link:
    """A VXLAN device that learns nothing from the wire: its forwarding entries come from the controller.
    Left down and detached; the caller enslaves it to its bridge and brings it up."""
    options: dict[str, Any] = {"vxlan_id": vni, "vxlan_port": port, "vxlan_learning": 0}
    if local:
        options["vxlan_local"] = local
    _call(
        f"create VXLAN device {name} (VNI {vni})",
        ipr.link,
        "add",
        ifname=name,
        kind="vxlan",
        mtu=mtu,
        **options,
    )
    created = link(ipr, name)
    assert created is not None
    _call(f"set alias of {name}", ipr.link, "set", index=created.index, ifalias=alias)
    return created


def entries(ipr: Netlink, index: int) -> set[Entry]:
    """The device's own entries with a remote destination (not what its bridge learned)."""
    found = set()
    for msg in _call("list forwarding entries", ipr.fdb, "dump", ifindex=index):
        dst = msg.get_attr("NDA_DST")
        if msg["ifindex"] == index and dst and msg["flags"] & nd_flags["self"]:
            found.add(Entry(str(msg.get_attr("NDA_LLADDR")), str(dst)))
    return found


def add_entry(ipr: Netlink, index: int, entry: Entry) -> None:
    """Flood entries are appended (one per peer); a MAC has one place, so its entry is replaced."""
    if entry.mac == FLOOD_MAC:
        _call(
            f"add flood entry to {entry.dst}",
            ipr.fdb,
            "append",
            ifindex=index,
            lladdr=entry.mac,
            dst=entry.dst,
        )
    else:
        _call(
            f"add forwarding entry {entry.mac} -> {entry.dst}",
            ipr.fdb,
            "replace",
            ifindex=index,
            lladdr=entry.mac,
            dst=entry.dst,
            state=_STATIC,
            flags=nd_flags["self"],
        )


def delete_entry(ipr: Netlink, index: int, entry: Entry) -> None:
    try:
        ipr.fdb("del", ifindex=index, lladdr=entry.mac, dst=entry.dst)
    except NetlinkError as exc:
        if exc.code != errno.ENOENT:
            raise RuntimeFailure(
                f"delete forwarding entry {entry.mac} -> {entry.dst}: {os.strerror(exc.code)}"
            ) from exc
