"""``POST /containers/create``: Docker's container config to the native ``InstanceCreate``.

Nothing is silently ignored. Each field is either translated, accepted because Atoll always behaves
that way (``Init``: every container's pid 1 is atoll-init), or refused with a 400 naming it, unless
it is at its zero value (the CLI sends every field, mostly empty). Errors of the native validation
name native fields; ``docker_field_names`` rewrites them into Docker's.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from atoll.api.docker import attachments
from atoll.api.docker.http import bad_request
from atoll.schemas import InstanceCreate, ResourcesWire, RestartPolicyWire

LOG_DRIVERS = ("", "json-file", "local")
"""Atoll keeps every container's log itself (CRI format); options such as max-size are refused."""

CONFIG_TRANSLATED = {
    "Image", "Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "Hostname", "Tty", "OpenStdin",
    "StopSignal", "StopTimeout", "Volumes", "ExposedPorts",
}  # fmt: skip
CONFIG_ACCEPTED = {
    # What the client attaches to is the client's business; StdinOnce is how stdin closes (always
    # once, see attach.py); ArgsEscaped is a Windows flag.
    "AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce", "ArgsEscaped", "HostConfig",
    "NetworkingConfig", "NetworkDisabled",
}  # fmt: skip
HOST_TRANSLATED = {
    "Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "PidsLimit", "RestartPolicy",
    "ReadonlyRootfs", "AutoRemove", "NetworkMode", "LogConfig", "Binds", "Mounts", "Tmpfs", "PortBindings",
    "PublishAllPorts",
}  # fmt: skip
HOST_ACCEPTED = {
    "Init",  # atoll-init is always pid 1: it reaps and forwards signals like docker-init
    "ConsoleSize",  # translated for a tty; meaningless without one
    "ContainerIDFile",  # written by the CLI itself
    "MemorySwappiness",  # checked below: only the default
    "Isolation",  # checked below: Linux has only "default"
}

NATIVE_TO_DOCKER = {
    "resources.memory_swap": "HostConfig.MemorySwap",
    "resources.memory": "HostConfig.Memory",
    "resources.cpus": "HostConfig.NanoCpus",
    "resources.cpu_quota": "HostConfig.CpuQuota",
    "resources.cpu_period": "HostConfig.CpuPeriod",
    "resources.cpu_shares": "HostConfig.CpuShares",
    "resources.pids_limit": "HostConfig.PidsLimit",
    "restart_policy.max_retries": "HostConfig.RestartPolicy.MaximumRetryCount",
    "restart_policy.name": "HostConfig.RestartPolicy.Name",
    "restart_policy": "HostConfig.RestartPolicy",
    "auto_remove": "HostConfig.AutoRemove",
    "stop_signal": "StopSignal",
    "stop_timeout": "StopTimeout",
    "working_dir": "WorkingDir",
    "hostname": "Hostname",
    "command": "Cmd",
    "entrypoint": "Entrypoint",
    "env": "Env",
    "name": "name",
    "user": "User",
    "labels": "Labels",
    "image": "Image",
    "networks": "NetworkingConfig.EndpointsConfig",
    "mounts": "HostConfig.Mounts",
    "publish": "HostConfig.PortBindings",
}


def docker_field_names(message: str) -> str:
    for native, docker in NATIVE_TO_DOCKER.items():
        message = message.replace(native, docker)
    return message


def is_zero(value: Any) -> bool:
    if value is None or value is False or value == 0 or value == "":
        return True
    if isinstance(value, list):
        return all(is_zero(v) for v in value)
    if isinstance(value, dict):
        return all(is_zero(v) for v in value.values())
    return False


MAPS = {"Volumes", "ExposedPorts", "PortBindings", "Tmpfs", "Sysctls", "StorageOpt", "Annotations"}
"""Maps keyed by the user's data: any key is a request (``{"/data": {}}``), whatever its value."""


def _refuse_unknown(section: dict[str, Any], handled: set[str], where: str) -> None:
    for key, value in section.items():
        if key in handled:
            continue
        if (key in MAPS and value) or not is_zero(value):
            raise bad_request(f"{where}{key}: not supported by Atoll yet (got {value!r})")


def _strings(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{field}: expected a list of strings")
    return list(value)


def _positive(host: dict[str, Any], key: str) -> int | None:
    """Docker's 0 (and for some fields -1) means "not set"."""
    value = host.get(key)
    if value is None or value == 0:
        return None
    if not isinstance(value, int):
        raise bad_request(f"HostConfig.{key}: expected an integer")
    return value


def resources(host: dict[str, Any]) -> ResourcesWire:
    memory = _positive(host, "Memory")
    if memory is not None and memory < 6 * 1024 * 1024:
        raise bad_request("HostConfig.Memory: minimum memory limit allowed is 6MB")
    swap = _positive(host, "MemorySwap")
    nano = _positive(host, "NanoCpus")
    quota, period = _positive(host, "CpuQuota"), _positive(host, "CpuPeriod")
    if nano is not None and (quota is not None or period is not None):
        raise bad_request("HostConfig.NanoCpus: conflicting options: NanoCPUs and CPU Period/Quota")
    pids = _positive(host, "PidsLimit")
    if pids is not None and pids < 0:
        pids = None  # -1: unlimited
    swappiness = host.get("MemorySwappiness")
    if swappiness not in (None, -1):
        raise bad_request("HostConfig.MemorySwappiness: not supported by Atoll yet")
    try:
        return ResourcesWire(
            memory=memory,
            memory_swap=swap,
            cpus=nano / 1e9 if nano is not None else None,
            cpu_quota=quota,
            cpu_period=period,
            cpu_shares=_positive(host, "CpuShares"),
            pids_limit=pids,
        )
    except ValidationError as e:
        raise bad_request(docker_field_names(_first_error(e, "resources"))) from None


def _first_error(e: ValidationError, prefix: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    return f"{loc}: {err['msg']}"


def restart_policy(host: dict[str, Any]) -> RestartPolicyWire:
    raw = host.get("RestartPolicy") or {}
    if not isinstance(raw, dict):
        raise bad_request("HostConfig.RestartPolicy: expected an object")
    name = raw.get("Name") or "no"
    retries = raw.get("MaximumRetryCount") or 0
    if name not in ("no", "on-failure", "always", "unless-stopped"):
        raise bad_request(f"HostConfig.RestartPolicy.Name: invalid restart policy {name!r}")
    if not isinstance(retries, int) or retries < 0:
        raise bad_request("HostConfig.RestartPolicy.MaximumRetryCount: must be a non-negative integer")
    if retries and name != "on-failure":
        raise bad_request(
            f"HostConfig.RestartPolicy.MaximumRetryCount: cannot be used with restart policy {name!r}"
        )
    return RestartPolicyWire(name=name, max_retries=retries)


def _console_size(host: dict[str, Any]) -> list[int] | None:
    size = host.get("ConsoleSize")
    if not size or not isinstance(size, list) or len(size) != 2 or not all(isinstance(n, int) for n in size):
        return None
    return list(size) if size[0] > 0 and size[1] > 0 else None


def _check_log_config(host: dict[str, Any]) -> None:
    log_config = host.get("LogConfig") or {}
    if (log_config.get("Type") or "") not in LOG_DRIVERS:
        # dockerd's exact wording: clients match it (docker-py's tests do).
        raise bad_request(f"logger: no log driver named '{log_config.get('Type')}' is registered")
    if not is_zero(log_config.get("Config")):
        raise bad_request("HostConfig.LogConfig.Config: log options are not supported by Atoll yet")


def instance_create(body: dict[str, Any], name: str) -> InstanceCreate:
    """The native request for a Docker create body; 400 naming the first field Atoll cannot honour."""
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise bad_request("HostConfig: expected an object")
    _refuse_unknown(body, CONFIG_TRANSLATED | CONFIG_ACCEPTED, "")
    _refuse_unknown(host, HOST_TRANSLATED | HOST_ACCEPTED, "HostConfig.")
    _check_log_config(host)
    if host.get("Isolation") not in (None, "", "default"):
        raise bad_request(f"HostConfig.Isolation: invalid isolation {host.get('Isolation')!r} on Linux")
    image = body.get("Image")
    if not image or not isinstance(image, str):
        raise bad_request("Image: config.Image is required")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise bad_request("Labels: expected a map of strings")
    stop_timeout = body.get("StopTimeout")
    fields: dict[str, Any] = {
        "image": image,
        "name": name.removeprefix("/") or None,
        "command": _strings(body.get("Cmd"), "Cmd"),
        "entrypoint": _strings(body.get("Entrypoint"), "Entrypoint"),
        "env": _strings(body.get("Env"), "Env") or [],
        "working_dir": body.get("WorkingDir") or None,
        "user": body.get("User") or None,
        "hostname": body.get("Hostname") or None,
        "labels": labels,
        "tty": bool(body.get("Tty")),
        "console_size": _console_size(host),
        "stdin": bool(body.get("OpenStdin")),
        "readonly_rootfs": bool(host.get("ReadonlyRootfs")),
        "resources": resources(host),
        "restart_policy": restart_policy(host),
        "stop_signal": body.get("StopSignal") or None,
        "stop_timeout": stop_timeout if stop_timeout is not None and stop_timeout >= 0 else None,
        "auto_remove": bool(host.get("AutoRemove")),
        "networks": attachments.networks(body, host),
        "mounts": attachments.mounts(body, host),
    }
    fields["publish"], fields["publish_all"] = attachments.publish(body, host)
    try:
        return InstanceCreate(**fields)
    except ValidationError as e:
        raise bad_request(docker_field_names(_first_error(e, ""))) from None
