"""Merging an image's config with a create request into what a host runs. Pure; Docker's rules.

- An entrypoint in the request replaces the image's and discards the image's cmd; a cmd in the request
  replaces the image's cmd. The process runs entrypoint + cmd, which must not be empty.
- Env: the defaults (PATH, HOSTNAME, TERM with a tty), then the image's, then the request's, merged by key:
  a later value replaces an earlier one in place and new keys are appended. A request entry without ``=``
  removes the key, as in Docker.
- working_dir: request > image > "/" and absolute; user: request > image; labels: image, then request;
  stop_signal: request > image > SIGTERM; hostname: the first 12 characters of the id.
- Resources: ``cpus`` is a CFS quota over a 100 ms period and excludes ``cpu_quota``/``cpu_period``;
  ``memory_swap`` needs ``memory`` and is at least ``memory`` or -1.
- Restart policy: ``max_retries`` only with ``on-failure``; ``auto_remove`` only with policy ``no``.
"""

from __future__ import annotations

import posixpath

from atoll.model.errors import InvalidInput
from atoll.model.image import ImageConfig
from atoll.model.instance import InstanceKind, InstanceSpec, ProcessSpec, Resources, RestartPolicy
from atoll.schemas import InstanceCreate, ResourcesWire
from atoll.services.signals import canonical_signal

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD_US = 100_000
MIN_CPUS = 0.01
"""The kernel refuses a CFS quota under 1 ms per 100 ms period."""
DEFAULT_STOP_TIMEOUT = 10.0
NO_COMMAND = "no command: the image has no Entrypoint or Cmd and none was given"


def merge_args(image: ImageConfig, entrypoint: list[str] | None, command: list[str] | None) -> list[str]:
    if entrypoint is not None:
        ep = [] if entrypoint == [""] else list(entrypoint)
        cmd = list(command) if command is not None else []
    else:
        ep = list(image.entrypoint or [])
        cmd = list(command) if command is not None else list(image.cmd or [])
    args = ep + cmd
    if not args:
        raise InvalidInput(NO_COMMAND)
    if any("\x00" in a for a in args):
        raise InvalidInput("command: arguments must not contain NUL bytes")
    return args


def _key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_env(base: list[str], overrides: list[str], field: str = "env") -> list[str]:
    """Replace-or-append by key, keeping first-seen order; ``KEY`` without ``=`` deletes ``KEY``."""
    merged: dict[str, str | None] = {}
    for entry in base:
        merged[_key(entry)] = entry
    for i, entry in enumerate(overrides):
        key = _key(entry)
        if not key:
            raise InvalidInput(f"{field}[{i}]: expected KEY=VALUE, got {entry!r}")
        if "\x00" in entry:
            raise InvalidInput(f"{field}[{i}]: must not contain NUL bytes")
        merged[key] = entry if "=" in entry else None
    return [e for e in merged.values() if e is not None]


def process_env(image: ImageConfig, request_env: list[str], hostname: str, tty: bool) -> list[str]:
    defaults = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        defaults.append("TERM=xterm")
    image_env = [e for e in image.env if _key(e)]
    return merge_env(merge_env(defaults, image_env, "image env"), request_env)


def working_dir(image: ImageConfig, requested: str | None) -> str:
    cwd = requested or image.working_dir or "/"
    if not cwd.startswith("/"):
        field = "working_dir" if requested else "image WorkingDir"
        raise InvalidInput(f"{field}: must be an absolute path, got {cwd!r}")
    return posixpath.normpath(cwd) if cwd != "/" else "/"


def merge_resources(r: ResourcesWire) -> Resources:
    quota, period = r.cpu_quota, r.cpu_period
    if r.cpus is not None:
        if quota is not None or period is not None:
            raise InvalidInput("resources.cpus: conflicts with resources.cpu_quota and resources.cpu_period")
        if r.cpus < MIN_CPUS:
            raise InvalidInput(f"resources.cpus: must be at least {MIN_CPUS}")
        quota, period = round(r.cpus * CPU_PERIOD_US), CPU_PERIOD_US
    swap = r.memory_swap or None  # 0 means unset, as in Docker
    if swap is not None:
        if r.memory is None:
            raise InvalidInput("resources.memory_swap: requires resources.memory")
        if swap != -1 and swap < r.memory:
            raise InvalidInput("resources.memory_swap: must be at least resources.memory, or -1")
    return Resources(
        memory_bytes=r.memory,
        memory_swap_bytes=swap,
        cpu_quota_us=quota,
        cpu_period_us=period,
        cpu_shares=r.cpu_shares,
        pids_limit=r.pids_limit,
    )


def restart_policy(request: InstanceCreate) -> RestartPolicy:
    policy = request.restart_policy
    if policy.max_retries and policy.name != "on-failure":
        raise InvalidInput(f"restart_policy.max_retries: only applies to on-failure, not to {policy.name!r}")
    if request.auto_remove and policy.name != "no":
        raise InvalidInput(
            f"auto_remove: conflicts with restart_policy {policy.name!r}; auto_remove needs policy 'no'"
        )
    return RestartPolicy(name=policy.name, max_retries=policy.max_retries)


def merge_config(
    image: ImageConfig,
    request: InstanceCreate,
    *,
    instance_id: str,
    name: str,
    project: str,
    image_id: str,
    layers: list[str],
) -> InstanceSpec:
    """The spec of a new instance; raises InvalidInput naming the offending field."""
    args = merge_args(image, request.entrypoint, request.command)
    hostname = request.hostname or instance_id[:12]
    stop_signal = (
        canonical_signal(request.stop_signal, "stop_signal")
        if request.stop_signal
        else canonical_signal(image.stop_signal, "image StopSignal")
        if image.stop_signal
        else "SIGTERM"
    )
    process = ProcessSpec(
        args=args,
        env=process_env(image, request.env, hostname, request.tty),
        cwd=working_dir(image, request.working_dir),
        user=request.user if request.user is not None else image.user,
        tty=request.tty,
        stdin=request.stdin,
        console_size=list(request.console_size) if request.tty and request.console_size else None,
    )
    return InstanceSpec(
        id=instance_id,
        name=name,
        project=project,
        image_id=image_id,
        layers=list(layers),
        process=process,
        kind=InstanceKind(request.kind),
        hostname=hostname,
        labels={**image.labels, **request.labels},
        readonly_rootfs=request.readonly_rootfs,
        resources=merge_resources(request.resources),
        stop_signal=stop_signal,
        stop_timeout=request.stop_timeout if request.stop_timeout is not None else DEFAULT_STOP_TIMEOUT,
    )
