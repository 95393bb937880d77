"""The tenant fast path: established TCP flows skip the bridges and ``br_netfilter`` (eBPF, tc ingress).

Why: across hosts, a packet between two instances crosses a veth, a bridge with ``br_netfilter``'s IP
hooks (conntrack, the security groups' rules), the VXLAN device, the underlay, the far VXLAN device, a
second bridge with its hooks and a second veth, and every ACK does the same back. No single hop is
expensive; their number is (docs/benchmarks.md, session 6: 0.57-0.65 of the underlay's throughput).
Once conntrack holds a flow as established, the rules have nothing left to decide about it (replies
and later packets of an accepted flow are accepted first thing), so the program in ``bpf/fastpath.c``
sends such packets straight from an instance's host-side veth to the network's VXLAN device (or to the
other instance's veth on this host), and from a VXLAN device straight into the instance. The first
packets of every flow, and everything that is not TCP over IPv4, take the bridge path as before, where
the rules decide and conntrack records the decision. The program checks that a frame's source MAC and
address are its port's before it skips the anti-spoofing table.

This module loads the program (built by ``bpfbuild``, through ``libbpf``), attaches it
to the ingress of every instance's host-side veth and every VXLAN device of ours, and keeps its maps
equal to the desired state that ``HostNetwork`` (local ports) and ``OverlayPlane`` (VXLAN devices and
the ports behind them) describe. The maps are rebuilt from that state by each agent: an agent started
again loads a fresh program, fills its maps and replaces the old program on each device, which kept
forwarding meanwhile (filters outlive the agent, and so do running flows).

Flows are looked up in the conntrack zone of their network's bridge (``zones``), where the rules'
conntrack put them. Without clang, libbpf or a kernel with conntrack's kfuncs and their zone option
(6.5 and later), the fast path is off, said once in the log, and everything takes the bridge path.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import platform
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from atoll.agent.net import bpfbuild, libbpf
from atoll.agent.net.netlink import Route
from atoll.model.errors import RuntimeFailure
from atoll.model.overlay import DEFAULT_VXLAN_PORT

log = logging.getLogger(__name__)

UNDERLAY_HANDLE = 0xA7011
UNDERLAY_PRIORITY = 0xA701
"""Our filter on a device of the host's (it may carry others' filters): ours to replace and remove."""
ZONES_SINCE = (6, 5)
DEFAULT_ESTABLISHED_S = 432000
DEFAULT_CLOSING_S = 120
_SYSCTL = Path("/proc/sys/net/netfilter")


class _Port(ctypes.Structure):
    _fields_ = [
        ("network", ctypes.c_uint32),
        ("ip", ctypes.c_uint8 * 4),
        ("mac", ctypes.c_uint8 * 6),
        ("pad", ctypes.c_uint8 * 2),
    ]


class _MacKey(ctypes.Structure):
    _fields_ = [("network", ctypes.c_uint32), ("mac", ctypes.c_uint8 * 6), ("pad", ctypes.c_uint8 * 2)]


class _Dest(ctypes.Structure):
    _fields_ = [
        ("ifindex", ctypes.c_uint32),
        ("local", ctypes.c_uint32),
        ("ip", ctypes.c_uint8 * 4),
        ("vni", ctypes.c_uint32),
    ]


class _Route(ctypes.Structure):
    _fields_ = [("ifindex", ctypes.c_uint32), ("nexthop", ctypes.c_uint8 * 4)]


@dataclass(frozen=True)
class LocalPort:
    """An instance's port on this host, as the fast path needs it."""

    network_id: str
    mac: str
    ip: str
    veth: str
    """Its host-side veth."""


@dataclass(frozen=True)
class Overlay:
    """What the overlay plane has on this host, as the fast path needs it."""

    devices: Mapping[str, int] = field(default_factory=dict)
    """network -> ifindex of its VXLAN device."""
    vnis: Mapping[str, int] = field(default_factory=dict)
    """network -> its VNI."""
    remote: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """network -> MAC of a port on another host -> that host's underlay address."""
    peers: Iterable[str] = ()
    """Underlay addresses of the peer hosts: only their VXLAN packets are decapsulated here."""
    routes: Mapping[str, Route] = field(default_factory=dict)
    """peer -> the host's route to it: the device packets to it leave by (and, taken to be the same,
    arrive by: the host's, shared) and its nexthop."""
    port: int = DEFAULT_VXLAN_PORT
    local_ip: str = ""
    """This host's underlay address ("": not known; then the VXLAN devices tunnel, and the packets'
    destination is not checked on arrival)."""


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


MAPS = ("ports", "vxlans", "vnis", "peers", "routes", "macs")
"""The maps rebuilt from the desired state on every change."""


def _timeout_ms(name: str, default_s: int) -> int:
    try:
        return int((_SYSCTL / name).read_text()) * 1000
    except (OSError, ValueError):
        return default_s * 1000


class _Loaded:
    """The program loaded for one host, its maps, and what was last written to them."""

    def __init__(self) -> None:
        self.obj = libbpf.BpfObject(bpfbuild.build())
        weakref.finalize(self, self.obj.close)
        self.from_port = self.obj.program_fd("from_port")
        self.from_overlay = self.obj.program_fd("from_overlay")
        self.from_underlay = self.obj.program_fd("from_underlay")
        self.ports = self.obj.map("ports")
        self.vxlans = self.obj.map("vxlans")
        self.vnis = self.obj.map("vnis")
        self.peers = self.obj.map("peers")
        self.routes = self.obj.map("routes")
        self.macs = self.obj.map("macs")
        self.config = self.obj.map("config")
        self.stats = self.obj.map("stats")
        self.timeouts = (
            _timeout_ms("nf_conntrack_tcp_timeout_established", DEFAULT_ESTABLISHED_S),
            _timeout_ms("nf_conntrack_tcp_timeout_time_wait", DEFAULT_CLOSING_S),
        )
        """conntrack's established and closing timeouts (ms), read once, in the host's namespace."""
        self.written: dict[str, dict[bytes, bytes]] = {name: {} for name in (*MAPS, "config")}
        self.attached: set[int] = set()
        """The ifindexes of our devices (veths, VXLAN devices) the program is attached to."""
        self.underlays: set[int] = set()
        """The ifindexes of the host's devices ``from_underlay`` is attached to."""
        self.swept = False
        """Whether a filter an earlier agent left on a device of the host's was looked for (once)."""


class FastPath:
    """One host's fast path (the namespace that plays the host). Its calls run in worker threads in
    that namespace; they never raise: a failure to load turns the fast path off, a failure to attach
    leaves that device on the bridge path, and both are logged."""

    def __init__(self, enabled: bool = True, *, zone_of: Callable[[str], int | None]) -> None:
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self.off_reason: str | None = None if enabled else "turned off"
        self._zone_of = zone_of
        """A network's conntrack zone on this host (None: it has no bridge here, yet or any more): the
        program looks its flows up there, and names the network by it in its maps."""
        self._local: dict[int, LocalPort] = {}
        self._devices: dict[int, str] = {}
        """VXLAN device ifindex -> network."""
        self._remote: dict[str, dict[str, tuple[int, str]]] = {}
        """network -> MAC of a port on another host -> the VXLAN device and the host's address."""
        self._overlay = Overlay()

    @property
    def active(self) -> bool:
        return self._loaded is not None

    def set_local(self, ports: Iterable[LocalPort]) -> None:
        """The instance ports on this host, exactly (in the host's namespace)."""
        ports = list(ports)
        with self._lock:
            if not ports and self._loaded is None:
                return  # nothing to do: not worth loading the program for
            if not self._load():
                return
            local = {}
            for port in ports:
                try:
                    ifindex = socket.if_nametoindex(port.veth)
                except OSError:
                    continue  # not made (yet): the next call finds it
                if self._attach(ifindex, port.veth, from_port=True):
                    local[ifindex] = port
            self._local = local
            self._write()

    def set_overlay(self, overlay: Overlay) -> None:
        """The overlay of this host, exactly (in the host's namespace)."""
        with self._lock:
            if not overlay.devices and self._loaded is None:
                return
            if not self._load():
                return
            self._devices = {
                ifindex: network
                for network, ifindex in overlay.devices.items()
                if self._attach(ifindex, f"the VXLAN device of {network[:12]}", from_port=False)
            }
            attached = {network: ifindex for ifindex, network in self._devices.items()}
            self._remote = {
                network: {mac: (attached[network], host) for mac, host in macs.items()}
                for network, macs in overlay.remote.items()
                if network in attached
            }
            self._overlay = overlay if attached else Overlay()
            self._attach_underlays({route.ifindex for route in self._overlay.routes.values()})
            self._write()

    def forwarded(self) -> int:
        """Packets the program has sent the fast way, on every CPU, since it was loaded."""
        with self._lock:
            if self._loaded is None:
                return 0
            values = (ctypes.c_uint64 * (_possible_cpus() or os.cpu_count() or 1))()
            self._loaded.stats.lookup(ctypes.c_uint32(0), values)
            return sum(values)

    # -- with the lock held ----------------------------------------------------------------------------

    def _load(self) -> bool:
        if self._loaded is not None:
            return True
        if self.off_reason is not None:
            return False
        try:
            if too_old := _kernel_too_old():
                raise RuntimeFailure(too_old)
            self._loaded = _Loaded()
        except RuntimeFailure as e:
            self.off_reason = str(e)
            log.warning("tenant fast path off (established flows take the bridge path): %s", e)
            return False
        log.info("tenant fast path on: established TCP flows between instances skip the bridges")
        return True

    def _attach(self, ifindex: int, what: str, *, from_port: bool) -> bool:
        loaded = self._loaded
        assert loaded is not None
        if ifindex in loaded.attached:
            return True
        try:
            libbpf.attach_ingress(ifindex, loaded.from_port if from_port else loaded.from_overlay)
        except RuntimeFailure as e:
            log.warning("%s stays on the bridge path: %s", what, e)
            return False
        loaded.attached.add(ifindex)
        return True

    def _attach_underlays(self, wanted: set[int]) -> None:
        """``from_underlay`` on exactly these devices of the host's; on the first call, also off any
        other device, where an earlier agent may have left it (peers gone while it was down)."""
        loaded = self._loaded
        assert loaded is not None
        stale = loaded.underlays - wanted
        if not loaded.swept:
            stale |= {index for index, _ in socket.if_nameindex()} - wanted
            loaded.swept = True
        for ifindex in stale:
            try:
                libbpf.detach_ingress(ifindex, handle=UNDERLAY_HANDLE, priority=UNDERLAY_PRIORITY)
            except RuntimeFailure as e:
                log.warning("could not take the fast path off link %d: %s", ifindex, e)
        loaded.underlays -= stale
        for ifindex in wanted - loaded.underlays:
            try:
                libbpf.attach_ingress(
                    ifindex, loaded.from_underlay, handle=UNDERLAY_HANDLE, priority=UNDERLAY_PRIORITY
                )
            except RuntimeFailure as e:
                log.warning("VXLAN packets arriving by link %d take the VXLAN device: %s", ifindex, e)
                continue
            loaded.underlays.add(ifindex)

    def _write(self) -> None:
        loaded = self._loaded
        assert loaded is not None
        wanted: dict[str, dict[bytes, bytes]] = {name: {} for name in MAPS}
        vnis = self._overlay.vnis
        networks = {p.network_id for p in self._local.values()} | set(self._devices.values())
        # A network without a zone (no bridge here, yet or any more) is left to the bridges.
        zones = {n: z for n in networks if (z := self._zone_of(n)) is not None}
        for network_id, macs in self._remote.items():
            if network_id not in zones:
                continue
            for mac_text, (ifindex, host) in macs.items():
                key = _MacKey(zones[network_id], (ctypes.c_uint8 * 6)(*_mac(mac_text)))
                wanted["macs"][bytes(key)] = bytes(_Dest(ifindex, 0, _ip(host), vnis.get(network_id, 0)))
        for ifindex, port in self._local.items():
            if port.network_id not in zones:
                continue
            network = zones[port.network_id]
            mac = (ctypes.c_uint8 * 6)(*_mac(port.mac))
            ip = _ip(port.ip)
            wanted["ports"][_u32(ifindex)] = bytes(_Port(network, ip, mac))
            wanted["macs"][bytes(_MacKey(network, mac))] = bytes(_Dest(ifindex, 1, ip, 0))  # here wins
        for ifindex, network_id in self._devices.items():
            if network_id in zones:
                wanted["vxlans"][_u32(ifindex)] = _u32(zones[network_id])
        attached = set(self._devices.values())
        for network_id, vni in self._overlay.vnis.items():
            if network_id in attached and network_id in zones:
                wanted["vnis"][_u32(vni)] = _u32(zones[network_id])
        for peer in self._overlay.peers:
            wanted["peers"][ipaddress.IPv4Address(peer).packed] = _u32(1)
        for peer, route in self._overlay.routes.items():
            wanted["routes"][ipaddress.IPv4Address(peer).packed] = bytes(
                _Route(route.ifindex, _ip(route.nexthop))
            )
        # In the program's order (enum config_index); the address in network order, as packets carry it.
        established_ms, closing_ms = loaded.timeouts
        local_ip = ipaddress.IPv4Address(self._overlay.local_ip or 0).packed
        config = (_u32(established_ms), _u32(closing_ms), _u32(self._overlay.port), local_ip)
        wanted["config"] = {_u32(index): value for index, value in enumerate(config)}
        loaded.attached &= set(self._local) | set(self._devices)
        try:
            _converge(loaded, wanted)
        except RuntimeFailure as e:
            log.warning("the fast path's maps are not up to date (the next change tries again): %s", e)


def _converge(loaded: _Loaded, wanted: Mapping[str, Mapping[bytes, bytes]]) -> None:
    """Write and delete what differs from what was written last (the maps are only written here)."""
    for name, entries in wanted.items():
        bpf_map = getattr(loaded, name)
        have = loaded.written[name]
        for key in have.keys() - entries.keys():  # (never the config: an array, always whole)
            bpf_map.delete(_raw(key))
            del have[key]
        for key, value in entries.items():
            if have.get(key) != value:
                bpf_map.update(_raw(key), _raw(value))
                have[key] = value


def _ip(text: str) -> ctypes.Array[ctypes.c_uint8]:
    return (ctypes.c_uint8 * 4)(*ipaddress.IPv4Address(text).packed)


def _u32(value: int) -> bytes:
    return bytes(ctypes.c_uint32(value))


def _raw(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data, len(data))


def _kernel_too_old(release: str | None = None) -> str | None:
    """Why this kernel cannot run the program, or None: conntrack lookups by zone came with 6.5."""
    release = release or platform.release()
    try:
        version = tuple(int(part) for part in release.split("-")[0].split(".")[:2])
    except ValueError:
        return None  # an unusual release string: let the load decide
    if version < ZONES_SINCE:
        since = ".".join(map(str, ZONES_SINCE))
        return f"Linux {release}: looking flows up by conntrack zone needs {since} or later"
    return None


def _possible_cpus() -> int:
    """The kernel sizes per-CPU values by the possible CPUs (``0-N``), not the online ones."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return 0
    return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
