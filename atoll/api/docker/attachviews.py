"""A native instance's NICs, mounts and published ports in Docker's inspect and ps shapes."""

from __future__ import annotations

from typing import Any

from atoll.schemas import Instance

NetworkNames = dict[str, str]
"""network id -> name, for the keys of ``NetworkSettings.Networks``."""


def network_mode(inst: Instance, names: NetworkNames) -> str:
    if not inst.networks:
        return "none"
    return names.get(inst.networks[0].network, inst.networks[0].network)


def networks(inst: Instance, names: NetworkNames) -> dict[str, Any]:
    out = {}
    for nic in inst.networks:
        name = names.get(nic.network, nic.network)
        out[name] = {
            "IPAMConfig": {"IPv4Address": nic.ip} if nic.ip_requested else None,
            "Links": None,
            "Aliases": nic.aliases or None,
            "MacAddress": nic.mac,
            "DriverOpts": None,
            "GwPriority": 0,
            "NetworkID": nic.network,
            "EndpointID": nic.port,
            "Gateway": nic.gateway,
            "IPAddress": nic.ip,
            "IPPrefixLen": nic.prefix_len,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": [inst.name, inst.id[:12], *nic.aliases],
        }
    return out


def ports(inst: Instance) -> dict[str, Any]:
    """``NetworkSettings.Ports``: every published port with its host bindings."""
    out: dict[str, Any] = {}
    for p in inst.published:
        out.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip, "HostPort": str(p.host_port)}
        )
    return out


def port_bindings(inst: Instance) -> dict[str, Any]:
    return ports(inst)


def summary_ports(inst: Instance) -> list[dict[str, Any]]:
    return [
        {"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.protocol}
        for p in inst.published
    ]


def primary(inst: Instance) -> dict[str, Any]:
    """The top-level (legacy) fields of NetworkSettings: those of the first NIC."""
    nic = inst.networks[0] if inst.networks else None
    return {
        "EndpointID": nic.port if nic else "",
        "Gateway": nic.gateway if nic else "",
        "IPAddress": nic.ip if nic else "",
        "IPPrefixLen": nic.prefix_len if nic else 0,
        "MacAddress": nic.mac if nic else "",
    }


def mounts(inst: Instance) -> list[dict[str, Any]]:
    out = []
    for m in inst.mounts:
        entry: dict[str, Any] = {"Type": m.type}
        if m.type == "volume":
            entry["Name"] = m.name
        entry["Source"] = m.source
        entry["Destination"] = m.destination
        if m.type == "volume":
            entry["Driver"] = "local"
        entry["Mode"] = "" if m.type != "volume" else "z"
        entry["RW"] = m.rw
        entry["Propagation"] = "rprivate" if m.type == "bind" else ""
        out.append(entry)
    return out


def binds(inst: Instance) -> list[str] | None:
    out = [
        f"{m.name if m.type == 'volume' else m.source}:{m.destination}" + ("" if m.rw else ":ro")
        for m in inst.mounts
        if m.type == "bind" or (m.type == "volume" and m.name)
    ]
    return out or None


def _size_text(size: int) -> str:
    """Bytes in the largest unit that is exact, as a user writes ``--tmpfs /t:size=3M``."""
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def tmpfs(inst: Instance) -> dict[str, str] | None:
    out = {}
    for m in inst.mounts:
        if m.type != "tmpfs":
            continue
        options = [] if m.rw else ["ro"]
        if m.tmpfs_size:
            options.append(f"size={_size_text(m.tmpfs_size)}")
        if m.tmpfs_mode is not None:
            options.append(f"mode={m.tmpfs_mode:o}")
        out[m.destination] = ",".join(options)
    return out or None
