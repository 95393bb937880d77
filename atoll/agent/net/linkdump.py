"""The links of the calling thread's network namespace, dumped over a plain rtnetlink socket.

Why not pyroute2 here: the dataplane dumps every link of the host at each network attach and each
reconcile, and the overlay's host scan does again; the dump grows with the number of containers (a
veth each). pyroute2 decodes every attribute of every link (statistics, per-family configuration, XDP)
into nested message objects that reference each other, so each dump left thousands of objects that
only a full garbage collection frees: with 20 containers, megabytes of them between collections,
which is most of what a burst of starts grew `atoll up` by. This dump asks the kernel to leave the
statistics out (``RTEXT_FILTER_SKIP_STATS``), reads only the attributes the agent uses, and makes one
small record per link, with no cycles. Everything else about links still goes through pyroute2.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from dataclasses import dataclass

from atoll.model.errors import RuntimeFailure

RTM_NEWLINK = 16
RTM_GETLINK = 18
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_EXT_MASK = 29
IFLA_INFO_KIND = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
NLA_TYPE_MASK = 0x3FFF
"""An attribute's type without the nested / byte-order flags."""

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, device type, index, flags, change mask
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_sequence = itertools.count(1)


IFF_UP = 0x1


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    kind: str
    """``bridge``, ``veth``, ... or "" for a device without link info (loopback, physical NICs)."""
    master: int
    alias: str
    mac: str
    mtu: int
    flags: int
    """The device flags (``IFF_UP``, ``IFF_LOOPBACK``, ...)."""

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        out[kind & NLA_TYPE_MASK] = data[offset + _ATTR.size : offset + length]
        offset += _align(length)
    return out


def _text(value: bytes | None) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace") if value else ""


def _link(data: bytes, offset: int, end: int) -> Link:
    _, _, index, flags, _ = _IFINFO.unpack_from(data, offset)
    attrs = _attrs(data, offset + _IFINFO.size, end)
    info = attrs.get(IFLA_LINKINFO)
    kind = _text(_attrs(info, 0, len(info)).get(IFLA_INFO_KIND)) if info else ""
    mtu = attrs.get(IFLA_MTU)
    master = attrs.get(IFLA_MASTER)
    return Link(
        index=index,
        name=_text(attrs.get(IFLA_IFNAME)),
        kind=kind,
        master=int.from_bytes(master, "little") if master else 0,
        alias=_text(attrs.get(IFLA_IFALIAS)),
        mac=":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b"")),
        mtu=int.from_bytes(mtu, "little") if mtu else 0,
        flags=flags,
    )


def dump() -> list[Link]:
    """Every link of the calling thread's network namespace, in the kernel's order."""
    seq = next(_sequence) & 0xFFFFFFFF
    ext_mask = _ATTR.pack(_ATTR.size + 4, IFLA_EXT_MASK) + struct.pack("=I", RTEXT_FILTER_SKIP_STATS)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + ext_mask
    request = _HEADER.pack(_HEADER.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body
    links: list[Link] = []
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    ) as sock:
        sock.bind((0, 0))
        sock.sendall(request)
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _, got_seq, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise RuntimeFailure("netlink link dump: malformed message")
                if got_seq == seq:
                    if kind == NLMSG_DONE:
                        return links
                    if kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                        if code:
                            raise RuntimeFailure(f"netlink link dump: {os.strerror(-code)}")
                    elif kind == RTM_NEWLINK:
                        links.append(_link(data, offset + _HEADER.size, offset + length))
                offset += _align(length)
