"""BIG TCP: GSO and GRO packets larger than 64 KiB on the devices Atoll owns.

Every per-packet cost of a tenant path (the bridge, ``br_netfilter``'s hooks and conntrack, VXLAN's
encapsulation) is paid once per GSO super-packet, so fewer, larger packets make the path cheaper per
byte. Since Linux 6.3 an IPv4 packet may be larger than 64 KiB inside the host (its IP length field
then reads 0 and the kernel takes the length from the buffer); how large is a per-device limit
(``IFLA_GSO_IPV4_MAX_SIZE`` for what the device is handed to send, ``IFLA_GRO_IPV4_MAX_SIZE`` for
what it builds from what it receives; ``IFLA_GSO_MAX_SIZE`` / ``IFLA_GRO_MAX_SIZE`` are the IPv6
ones), at most the device's ``tso_max_size`` (veth and bridge: 512 KiB).

TCP sizes its packets by the limit of the device its route leaves through, and a device handed a
packet above its own limit segments it in software into MTU-sized packets, the most expensive path
there is. So the sender's device (the instance's NIC) must not be set larger than any device its
packets may cross on the way out; the devices in the middle (host-side veths, bridges, VXLAN
devices) only need to be at least as large. ``dataplane`` decides which limit goes where.

iproute2 6.1 (Debian 12) and pyroute2 0.9 cannot set these attributes, hence this module: one
``RTM_NEWLINK`` with the four attributes, over a plain rtnetlink socket, in the calling thread's
network namespace. A kernel that does not know them ignores unknown attributes on set, so support is
probed by reading them back (``probe``), never assumed.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

from atoll.agent.net import linkdump
from atoll.model.errors import RuntimeFailure

IFLA_GSO_MAX_SIZE = 41
IFLA_GRO_MAX_SIZE = 58
IFLA_TSO_MAX_SIZE = 59
IFLA_GSO_IPV4_MAX_SIZE = 63
IFLA_GRO_IPV4_MAX_SIZE = 64
NLM_F_ACK = 0x4

LEGACY = 65536
"""The kernel's default (and, before BIG TCP, its maximum): no BIG TCP."""
DEFAULT = 196608
"""192 KiB, Cilium's default for pods: three times the legacy size; larger sizes gained little more
here and make each packet's latency longer."""
UNLIMITED = 524280
"""The most a veth or bridge takes (``tso_max_size``): no limit from outside."""


@dataclass(frozen=True, slots=True)
class Sizes:
    gso_ipv4: int
    gro_ipv4: int
    gso: int
    gro: int
    tso_max: int
    """The most the device can take at all (the kernel refuses larger GSO/GRO sizes)."""


def _request(kind: int, flags: int, index: int, attrs: bytes = b"") -> list[tuple[int, bytes, int]]:
    """Send one rtnetlink request about link ``index``; return its answers as (type, message, offset)."""
    body = linkdump._IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attrs
    seq = next(linkdump._sequence) & 0xFFFFFFFF
    header = linkdump._HEADER.pack(linkdump._HEADER.size + len(body), kind, flags, seq, 0)
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    ) as sock:
        sock.bind((0, 0))
        sock.sendall(header + body)
        data = sock.recv(1 << 16)
    answers = []
    offset = 0
    while offset + linkdump._HEADER.size <= len(data):
        length, got, _, got_seq, _ = linkdump._HEADER.unpack_from(data, offset)
        if length < linkdump._HEADER.size:
            break
        if got_seq == seq:
            if got == linkdump.NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + linkdump._HEADER.size)
                if code:
                    raise OSError(-code, os.strerror(-code))
            answers.append((got, data[: offset + length], offset + linkdump._HEADER.size))
        offset += linkdump._align(length)
    return answers


def _u32(raw: bytes | None) -> int:
    return int.from_bytes(raw[:4], "little") if raw else 0


def read(index: int) -> Sizes:
    """The device's sizes; 0 for what the kernel does not report (BIG TCP for IPv4 needs 6.3)."""
    mask = linkdump._ATTR.pack(linkdump._ATTR.size + 4, linkdump.IFLA_EXT_MASK)
    mask += struct.pack("=I", linkdump.RTEXT_FILTER_SKIP_STATS)
    try:
        answers = _request(linkdump.RTM_GETLINK, linkdump.NLM_F_REQUEST, index, mask)
    except OSError as exc:
        raise RuntimeFailure(f"read the GSO sizes of link {index}: {exc.strerror}") from exc
    for kind, data, offset in answers:
        if kind == linkdump.RTM_NEWLINK:
            attrs = linkdump._attrs(data, offset + linkdump._IFINFO.size, len(data))
            return Sizes(
                gso_ipv4=_u32(attrs.get(IFLA_GSO_IPV4_MAX_SIZE)),
                gro_ipv4=_u32(attrs.get(IFLA_GRO_IPV4_MAX_SIZE)),
                gso=_u32(attrs.get(IFLA_GSO_MAX_SIZE)),
                gro=_u32(attrs.get(IFLA_GRO_MAX_SIZE)),
                tso_max=_u32(attrs.get(IFLA_TSO_MAX_SIZE)),
            )
    raise RuntimeFailure(f"read the GSO sizes of link {index}: no answer")


def write(index: int, size: int) -> None:
    """Set the device's GSO and GRO sizes, IPv4 and IPv6, to ``size`` (at most its ``tso_max``)."""
    attrs = b"".join(
        linkdump._ATTR.pack(linkdump._ATTR.size + 4, attr) + struct.pack("=I", size)
        for attr in (IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE, IFLA_GSO_MAX_SIZE, IFLA_GRO_MAX_SIZE)
    )
    try:
        _request(linkdump.RTM_NEWLINK, linkdump.NLM_F_REQUEST | NLM_F_ACK, index, attrs)
    except OSError as exc:
        raise RuntimeFailure(f"set the GSO size of link {index} to {size}: {exc.strerror}") from exc


def apply(index: int, size: int) -> None:
    """Give the device ``size``, capped at its ``tso_max``, unless it has it already. Idempotent. On a
    kernel without IPv4 BIG TCP (the attribute is not reported) nothing is set: 64 KiB is the default."""
    have = read(index)
    if not have.gso_ipv4:
        return
    want = max(LEGACY, min(size, have.tso_max or LEGACY))
    if have.gso_ipv4 == have.gro_ipv4 == want and have.gso in (0, want) and have.gro in (0, want):
        return
    write(index, want)


def probe() -> bool:
    """Whether the kernel has IPv4 BIG TCP: it reports the attribute on the loopback device."""
    try:
        return read(socket.if_nametoindex("lo")).gso_ipv4 > 0
    except (OSError, RuntimeFailure):
        return False


def resolve(setting: str) -> int:
    """The GSO size a host uses, from its setting (``ATOLL_BIG_TCP``): ``auto`` is ``DEFAULT`` when the
    kernel has IPv4 BIG TCP; ``off`` (or ``0``, or a kernel without it) the legacy size; a number of
    bytes, that size (65536 to 524280). Bad values raise ``ValueError`` naming the setting."""
    value = setting.strip().lower()
    if value in ("off", "0", "no", "false"):
        return LEGACY
    if value == "auto":
        size = DEFAULT
    else:
        try:
            size = int(value)
        except ValueError:
            raise ValueError(f"ATOLL_BIG_TCP: {setting!r} is not auto, off or a size in bytes") from None
        if not LEGACY <= size <= UNLIMITED:
            raise ValueError(f"ATOLL_BIG_TCP: {size} is not between {LEGACY} and {UNLIMITED} bytes")
    return size if size > LEGACY and probe() else LEGACY
