"""Docker's ``-p`` / ``--publish`` syntax, parsed into publish requests. Pure; raises ``typer.BadParameter``.

``[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]``, where either port may be a range ``A-B``:
``8080:80``, ``127.0.0.1:8080:80/tcp``, ``127.0.0.1::80``, ``80`` (a random host port), ``53:53/udp``,
``8000-8002:80-82`` (pairwise) and ``80-82`` (a random host port each).
"""

from __future__ import annotations

import typer

from atoll.schemas import PublishRequest


def _range(text: str, what: str, spec: str) -> list[int]:
    low, sep, high = text.partition("-")
    try:
        first = int(low)
        last = int(high) if sep else first
    except ValueError:
        raise typer.BadParameter(f"{spec!r}: {what} {text!r} is not a port or a range A-B") from None
    if not (1 <= first <= last <= 65535):
        raise typer.BadParameter(f"{spec!r}: {what} {text!r} is not a port or a range within 1-65535")
    return list(range(first, last + 1))


def parse_publish(spec: str) -> list[PublishRequest]:
    text, _, protocol = spec.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise typer.BadParameter(f"{spec!r}: protocol {protocol!r} is not tcp or udp")
    if text.startswith("["):
        raise typer.BadParameter(f"{spec!r}: IPv6 host addresses are not supported")
    parts = text.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise typer.BadParameter(f"{spec!r}: use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")
    host_ip = parts[0] if len(parts) == 3 else None
    host_text = parts[-2] if len(parts) >= 2 else ""
    container = _range(parts[-1], "container port", spec)
    hosts: list[int | None] = [None] * len(container)
    if host_text:
        given = _range(host_text, "host port", spec)
        if len(given) != len(container):
            raise typer.BadParameter(f"{spec!r}: the host and container port ranges differ in length")
        hosts = list(given)
    return [
        PublishRequest(container_port=c, host_port=h, host_ip=host_ip or None, protocol=protocol)
        for h, c in zip(hosts, container, strict=True)
    ]


def parse_publishes(specs: list[str]) -> list[PublishRequest]:
    return [request for spec in specs for request in parse_publish(spec)]


def mapping_line(container_port: int, protocol: str, host_ip: str, host_port: int) -> str:
    """``docker port``'s format: ``80/tcp -> 0.0.0.0:8080``."""
    return f"{container_port}/{protocol} -> {host_ip}:{host_port}"
