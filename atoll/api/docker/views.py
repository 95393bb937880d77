"""Native instances as Docker sees containers: ``docker inspect`` and ``docker ps`` shapes.

Docker keeps the request's Cmd and Entrypoint apart; Atoll keeps the merged argv, so ``Config.Cmd``
is the whole argv and ``Config.Entrypoint`` is empty (exact for images without an entrypoint).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from atoll.api.docker import attachviews
from atoll.api.docker.attachviews import NetworkNames
from atoll.model.clock import human_duration
from atoll.schemas import Instance
from atoll.services.clock import parse_iso

ZERO_TIME = "0001-01-01T00:00:00Z"


def docker_time(value: str) -> str:
    return value or ZERO_TIME


def unix_time(value: str) -> int:
    parsed = parse_iso(value)
    return int(parsed.timestamp()) if parsed else 0


def _since(value: str) -> float:
    parsed = parse_iso(value)
    return (datetime.now(UTC) - parsed).total_seconds() if parsed else 0.0


def state_name(inst: Instance, paused: bool = False) -> str:
    return "paused" if paused and inst.status == "running" else inst.status


def status_text(inst: Instance, paused: bool = False) -> str:
    if inst.status == "running":
        return f"Up {human_duration(_since(inst.started_at))}" + (" (Paused)" if paused else "")
    if inst.status == "restarting":
        return f"Restarting ({inst.exit_code or 0}) {human_duration(_since(inst.finished_at))} ago"
    if inst.status == "exited":
        return f"Exited ({inst.exit_code or 0}) {human_duration(_since(inst.finished_at))} ago"
    if inst.status == "dead":
        return "Dead"
    return "Created"


def _host_config(inst: Instance, names: NetworkNames) -> dict[str, Any]:
    r = inst.resources
    cpus = r.cpus
    return {
        "NetworkMode": attachviews.network_mode(inst, names),
        "RestartPolicy": {
            "Name": inst.restart_policy.name,
            "MaximumRetryCount": inst.restart_policy.max_retries,
        },
        "AutoRemove": inst.auto_remove,
        "ReadonlyRootfs": inst.readonly_rootfs,
        "Memory": r.memory or 0,
        "MemorySwap": r.memory_swap or 0,
        "NanoCpus": int(cpus * 1e9) if cpus else 0,
        "CpuShares": r.cpu_shares or 0,
        "CpuQuota": r.cpu_quota if r.cpu_quota and not cpus else 0,
        "CpuPeriod": r.cpu_period if r.cpu_period and not cpus else 0,
        "PidsLimit": r.pids_limit,
        "Init": True,
        # Clients (docker-py's run) read logs back only from drivers they know to be readable; Atoll's
        # log is readable like json-file's.
        "LogConfig": {"Type": "json-file", "Config": {}},
        "Binds": attachviews.binds(inst),
        "Tmpfs": attachviews.tmpfs(inst),
        "PortBindings": attachviews.port_bindings(inst),
        "Privileged": False,
        "CapAdd": None,
        "CapDrop": None,
        "Dns": [],
        "ExtraHosts": None,
        "Isolation": "",
        "ConsoleSize": [0, 0],
        "OomKillDisable": False,
    }


def inspect(inst: Instance, names: NetworkNames | None = None) -> dict[str, Any]:
    names = names or {}
    args = inst.process.args
    running, paused = inst.status == "running", inst.paused
    return {
        "Id": inst.id,
        "Created": inst.created_at,
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": state_name(inst, paused),
            "Running": running,
            "Paused": paused and running,
            "Restarting": inst.status == "restarting",
            "OOMKilled": inst.oom_killed,
            "Dead": inst.status == "dead",
            "Pid": inst.pid if running else 0,
            "ExitCode": inst.exit_code or 0,
            "Error": inst.error,
            "StartedAt": docker_time(inst.started_at),
            "FinishedAt": docker_time(inst.finished_at),
        },
        "Image": inst.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": "",
        "Name": "/" + inst.name,
        "RestartCount": inst.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": _host_config(inst, names),
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "Mounts": attachviews.mounts(inst),
        "Config": {
            "Hostname": inst.hostname,
            "Domainname": "",
            "User": inst.process.user,
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": inst.process.tty,
            "OpenStdin": inst.process.stdin,
            "StdinOnce": inst.process.stdin,
            "Env": inst.process.env,
            "Cmd": args,
            "Image": inst.image,
            "Volumes": None,
            "WorkingDir": inst.process.cwd,
            "Entrypoint": None,
            "OnBuild": None,
            "Labels": inst.labels,
            "StopSignal": inst.stop_signal,
            "StopTimeout": int(inst.stop_timeout),
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": "",
            "Ports": attachviews.ports(inst),
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPv6Gateway": "",
            **attachviews.primary(inst),
            "Networks": attachviews.networks(inst, names),
        },
    }


def summary(inst: Instance, names: NetworkNames | None = None) -> dict[str, Any]:
    """One row of ``GET /containers/json``."""
    names = names or {}
    return {
        "Id": inst.id,
        "Names": ["/" + inst.name],
        "Image": inst.image,
        "ImageID": inst.image_id,
        "Command": " ".join(inst.process.args),
        "Created": unix_time(inst.created_at),
        "Ports": attachviews.summary_ports(inst),
        "Labels": inst.labels,
        "State": state_name(inst, inst.paused),
        "Status": status_text(inst, inst.paused),
        "HostConfig": {"NetworkMode": attachviews.network_mode(inst, names)},
        "NetworkSettings": {"Networks": attachviews.networks(inst, names)},
        "Mounts": attachviews.mounts(inst),
    }
