"""What a Docker create body asks to attach: networks, mounts and published ports, as native requests.

- Networks: ``HostConfig.NetworkMode`` and ``NetworkingConfig.EndpointsConfig`` (several networks from
  API 1.44). ``default``/``bridge`` is the project's ``bridge`` network (see networks.py), ``none`` is
  loopback only, ``host`` and ``container:<id>`` are refused. Per endpoint: ``IPAMConfig.IPv4Address``
  (``--ip``), ``Aliases`` (``--network-alias``) and ``MacAddress`` (``--mac-address``).
- Mounts: ``HostConfig.Binds`` (``name:/path[:ro]``, ``/host:/path``), ``HostConfig.Mounts`` (volume,
  bind, tmpfs), ``HostConfig.Tmpfs`` and ``Config.Volumes`` (anonymous volumes).
- Ports: ``HostConfig.PortBindings`` (``-p``) and ``PublishAllPorts`` (``-P``: the image's exposed
  ports and ``Config.ExposedPorts``).
Anything that cannot be honoured is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from atoll.api.docker.http import bad_request
from atoll.schemas import InstanceNetwork, MountRequest, PublishRequest

DEFAULT_NETWORK = "bridge"
ENDPOINT_FIELDS = {
    "IPAMConfig", "Aliases", "Links", "MacAddress", "DriverOpts", "GwPriority", "NetworkID",
    "EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address",
    "GlobalIPv6PrefixLen", "DNSNames",
}  # fmt: skip
ENDPOINT_ZERO_ONLY = ENDPOINT_FIELDS - {
    "IPAMConfig", "Aliases", "DNSNames", "NetworkID", "EndpointID", "MacAddress",
}  # fmt: skip


def _native_network(name: str) -> str:
    return DEFAULT_NETWORK if name in ("default", "bridge") else name


def _endpoint(name: str, raw: Any) -> InstanceNetwork:
    field = f"NetworkingConfig.EndpointsConfig.{name}"
    raw = raw or {}
    if not isinstance(raw, dict):
        raise bad_request(f"{field}: expected an object")
    for key, value in raw.items():
        if key not in ENDPOINT_FIELDS or (key in ENDPOINT_ZERO_ONLY and value):
            raise bad_request(f"{field}.{key}: not supported by Atoll yet (got {value!r})")
    ipam = raw.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise bad_request(f"{field}.IPAMConfig: expected an object")
    for key, value in ipam.items():
        if key != "IPv4Address" and value:
            raise bad_request(f"{field}.IPAMConfig.{key}: not supported by Atoll yet")
    aliases = raw.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise bad_request(f"{field}.Aliases: expected a list of strings")
    try:
        return InstanceNetwork(
            network=_native_network(name),
            ip=ipam.get("IPv4Address") or None,
            aliases=aliases,
            mac=raw.get("MacAddress") or None,
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise bad_request(f"{field}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


def networks(body: dict[str, Any], host: dict[str, Any]) -> list[InstanceNetwork]:
    mode = host.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise bad_request("HostConfig.NetworkMode: expected a string")
    if mode == "host":
        raise bad_request("HostConfig.NetworkMode: the host network is not supported by Atoll")
    if mode.startswith("container:"):
        raise bad_request("HostConfig.NetworkMode: container:<id> network mode is not supported by Atoll yet")
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not isinstance(endpoints, dict):
        raise bad_request("NetworkingConfig.EndpointsConfig: expected an object")
    if mode == "none" or body.get("NetworkDisabled"):
        others = [n for n in endpoints if n != "none"]
        if others:
            raise bad_request(
                f"NetworkingConfig.EndpointsConfig.{others[0]}: a container on network none has no other"
            )
        return []
    for name in endpoints:
        if name in ("host", "none"):
            raise bad_request(f"NetworkingConfig.EndpointsConfig.{name}: cannot be combined with others")
    out = [_endpoint(name, raw) for name, raw in endpoints.items()]
    wanted = _native_network(mode)
    if not any(n.network == wanted for n in out):
        out.insert(0, InstanceNetwork(network=wanted))
    else:  # the mode's network first: it is the one of NetworkSettings.IPAddress
        out.sort(key=lambda n: n.network != wanted)
    return out


def _port_key(key: str, field: str) -> tuple[int, str]:
    number, _, protocol = key.partition("/")
    protocol = protocol or "tcp"
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise bad_request(f"{field}: invalid port {key!r}")
    if protocol not in ("tcp", "udp"):
        raise bad_request(f"{field}: protocol {protocol!r} is not supported (tcp, udp)")
    return int(number), protocol


def publish(body: dict[str, Any], host: dict[str, Any]) -> tuple[list[PublishRequest], bool]:
    """(the ports to publish, publish all); ``Config.ExposedPorts`` join the image's with -P."""
    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise bad_request("HostConfig.PortBindings: expected an object")
    out = []
    for key, items in bindings.items():
        field = f"HostConfig.PortBindings.{key}"
        port, protocol = _port_key(key, field)
        for item in items or [{}]:
            host_ip = (item or {}).get("HostIp") or None
            host_port = (item or {}).get("HostPort") or ""
            if host_port and not host_port.isdigit():
                raise bad_request(f"{field}.HostPort: port ranges are not supported by Atoll yet")
            try:
                out.append(
                    PublishRequest(
                        container_port=port,
                        protocol=protocol,
                        host_ip=host_ip,
                        host_port=int(host_port) if host_port else None,
                    )
                )
            except ValidationError as e:
                raise bad_request(f"{field}: {e.errors()[0]['msg']}") from None
    publish_all = bool(host.get("PublishAllPorts"))
    exposed = body.get("ExposedPorts") or {}
    if not isinstance(exposed, dict):
        raise bad_request("ExposedPorts: expected an object")
    if publish_all:
        have = {(p.container_port, p.protocol) for p in out}
        for key in exposed:
            port, protocol = _port_key(key, "ExposedPorts")
            if (port, protocol) not in have:
                out.append(PublishRequest(container_port=port, protocol=protocol))
                have.add((port, protocol))
    return out, publish_all


def _bind(text: str, i: int) -> MountRequest:
    field = f"HostConfig.Binds[{i}]"
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise bad_request(f"{field}: invalid volume specification {text!r}")
    source, destination = parts[0], parts[1]
    read_only, no_copy = False, False
    for option in parts[2].split(",") if len(parts) == 3 else []:
        if option == "ro":
            read_only = True
        elif option in ("rw", "rprivate", "private"):
            pass
        elif option == "nocopy":
            no_copy = True
        else:
            raise bad_request(f"{field}: mount option {option!r} is not supported by Atoll yet")
    kind = "bind" if source.startswith("/") else "volume"
    return _mount(
        field, type=kind, source=source, destination=destination, read_only=read_only, no_copy=no_copy
    )


def _mount(field: str, **fields: Any) -> MountRequest:
    try:
        return MountRequest(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        raise bad_request(f"{field}: {err['loc'][0] if err['loc'] else ''} {err['msg']}") from None


def _structured(raw: Any, i: int) -> MountRequest:
    field = f"HostConfig.Mounts[{i}]"
    if not isinstance(raw, dict):
        raise bad_request(f"{field}: expected an object")
    known = {
        "Type",
        "Source",
        "Target",
        "ReadOnly",
        "Consistency",
        "VolumeOptions",
        "BindOptions",
        "TmpfsOptions",
    }
    for key, value in raw.items():
        if key not in known and value:
            raise bad_request(f"{field}.{key}: not supported by Atoll yet")
    kind = raw.get("Type") or "volume"
    if kind not in ("volume", "bind", "tmpfs"):
        raise bad_request(f"{field}.Type: mount type {kind!r} is not supported (volume, bind, tmpfs)")
    fields: dict[str, Any] = {
        "type": kind,
        "source": raw.get("Source") or "",
        "destination": raw.get("Target") or "",
        "read_only": bool(raw.get("ReadOnly")),
    }
    volume = raw.get("VolumeOptions") or {}
    for key, value in volume.items():
        if key != "NoCopy" and value:
            raise bad_request(f"{field}.VolumeOptions.{key}: not supported by Atoll yet")
    fields["no_copy"] = bool(volume.get("NoCopy"))
    bind = raw.get("BindOptions") or {}
    for key, value in bind.items():
        if value and not (key == "Propagation" and value in ("rprivate", "private")):
            raise bad_request(f"{field}.BindOptions.{key}: not supported by Atoll yet")
    tmpfs = raw.get("TmpfsOptions") or {}
    for key, value in tmpfs.items():
        if key not in ("SizeBytes", "Mode") and value:
            raise bad_request(f"{field}.TmpfsOptions.{key}: not supported by Atoll yet")
    if tmpfs.get("SizeBytes"):
        fields["tmpfs_size"] = tmpfs["SizeBytes"]
    if tmpfs.get("Mode"):
        fields["tmpfs_mode"] = tmpfs["Mode"]
    if not fields["destination"]:
        raise bad_request(f"{field}.Target: required")
    return _mount(field, **fields)


def _size(text: str, field: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    lowered = text.lower().rstrip("b")
    factor = units.get(lowered[-1:], 1)
    digits = lowered[:-1] if lowered[-1:] in units else lowered
    if not digits.isdigit():
        raise bad_request(f"{field}: invalid size {text!r}")
    return int(digits) * factor


def _tmpfs(path: str, options: str) -> MountRequest:
    field = f"HostConfig.Tmpfs.{path}"
    fields: dict[str, Any] = {"type": "tmpfs", "destination": path}
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        if key == "size":
            fields["tmpfs_size"] = _size(value, field + ".size")
        elif key == "mode":
            try:
                fields["tmpfs_mode"] = int(value, 8)
            except ValueError:
                raise bad_request(f"{field}.mode: invalid mode {value!r}") from None
        elif key in ("rw", "nosuid", "nodev", "noexec"):
            pass  # what Atoll's tmpfs mounts are anyway (rw, nosuid, nodev)
        elif key == "ro":
            fields["read_only"] = True
        else:
            raise bad_request(f"{field}: option {key!r} is not supported by Atoll yet")
    return _mount(field, **fields)


def mounts(body: dict[str, Any], host: dict[str, Any]) -> list[MountRequest]:
    out: list[MountRequest] = []
    binds = host.get("Binds") or []
    if not isinstance(binds, list) or not all(isinstance(b, str) for b in binds):
        raise bad_request("HostConfig.Binds: expected a list of strings")
    out += [_bind(text, i) for i, text in enumerate(binds)]
    structured = host.get("Mounts") or []
    if not isinstance(structured, list):
        raise bad_request("HostConfig.Mounts: expected a list")
    out += [_structured(raw, i) for i, raw in enumerate(structured)]
    tmpfs = host.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise bad_request("HostConfig.Tmpfs: expected an object")
    out += [_tmpfs(path, options or "") for path, options in tmpfs.items()]
    anonymous = body.get("Volumes") or {}
    if not isinstance(anonymous, dict):
        raise bad_request("Volumes: expected an object")
    taken = {m.destination.rstrip("/") for m in out}
    for path in anonymous:
        if path.rstrip("/") not in taken:
            out.append(_mount(f"Volumes.{path}", type="volume", source="", destination=path))
    return out
