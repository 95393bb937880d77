"""The OCI runtime documents: a container's ``config.json`` and the process JSON of ``runc exec``.

Pure functions of the instance spec (plus what the host's cgroups support), so they are unit-testable
and the same spec always gives the same container. The choices follow Docker wherever Docker has one,
because that is what images expect:

- Process 1 is ``atoll-init`` at ``INIT_PATH``, bind-mounted read-only from the host into the runtime's
  ``/dev`` tmpfs: nothing is added to the image's root filesystem, and it works with a read-only root.
  The runtime never allocates a terminal; with a TTY the init makes the pty itself (``-t``), so that
  output goes to the log file like any other.
- Environment: ``PATH`` (Docker's default) if the image has none, ``HOSTNAME``, ``HOME`` from the
  resolved user, and ``TERM=xterm`` with a TTY, each only when not already set.
- Namespaces pid, mount, ipc, uts and network: a new one with loopback only (the runtime brings ``lo``
  up), or, for an instance with ports, the agent's namespace at the given path (see ``agent.net``).
  On cgroup v2 the container gets its own cgroup namespace, as in Docker.
- Instance mounts (volumes, binds, tmpfs) come after the runtime's own, sorted with the bound /etc
  files by depth (as Docker sorts them), so ``/etc/hosts`` still lands on a volume mounted at ``/etc``.
  Volumes and binds are ``rbind,rprivate`` (plus ``ro``); tmpfs gets Docker's ``nosuid,nodev,noexec``
  and mode 1777 unless told otherwise.
- Memory swap uses Docker's semantics (see ``memory_resources``). ``/tmp`` is not made writable with a
  read-only root, as in Docker: only ``/dev``, ``/dev/shm`` and the bound files are.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atoll.agent.runtime.cgroups import HostCgroups, detect_host_cgroups
from atoll.agent.runtime.security import MASKED_PATHS, READONLY_PATHS, capabilities, seccomp_profile
from atoll.agent.runtime.users import ResolvedUser
from atoll.model.errors import InvalidInput
from atoll.model.instance import InstanceSpec, Resources
from atoll.model.ports import ExecSpec
from atoll.model.volume import MountSpec, MountType

OCI_VERSION = "1.0.2"
INIT_PATH = "/dev/.atoll-init"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOFILE_LIMIT = 1048576  # Docker's (containerd's) default for both soft and hard
DEFAULT_CPU_PERIOD_US = 100_000
CAP_SYS_RESOURCE = 24
DEV_TMPFS_SIZE = "65536k"
SHM_SIZE = "65536k"
DEFAULT_TTY_SIZE = (24, 80)  # rows, cols of an exec's terminal until the client sends its size


def _env_key(item: str) -> str:
    return item.partition("=")[0]


def merge_env(base: Sequence[str], override: Sequence[str]) -> list[str]:
    """``base`` with entries of ``override`` replacing those with the same name, order kept."""
    out: dict[str, str] = {}
    for item in (*base, *override):
        out[_env_key(item)] = item
    return list(out.values())


def _with_defaults(env: Sequence[str], defaults: Sequence[tuple[str, str]]) -> list[str]:
    present = {_env_key(item) for item in env}
    extra = [f"{key}={value}" for key, value in defaults if key not in present]
    return [*extra, *env]


def _user(user: ResolvedUser) -> dict[str, Any]:
    out: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        out["additionalGids"] = list(user.additional_gids)
    return out


def _rlimits() -> list[dict[str, Any]]:
    """Docker's NOFILE limit, lowered to our own hard limit where we may not raise it (no
    CAP_SYS_RESOURCE, as in some sandboxes): asking for more would make every start fail."""
    limit = NOFILE_LIMIT
    if not _may_raise_rlimits():
        limit = min(limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    return [{"type": "RLIMIT_NOFILE", "hard": limit, "soft": limit}]


def _may_raise_rlimits() -> bool:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << CAP_SYS_RESOURCE))
    return False


def memory_resources(res: Resources, *, swap_accounting: bool) -> dict[str, Any]:
    """The OCI ``memory`` object, with Docker's swap rules.

    ``memory_swap_bytes`` is memory plus swap: unset (or 0) means twice the memory limit, -1 means
    unlimited swap, equal to the memory limit means no swap. Swap is left out entirely where the
    host cannot account for it (v1 without ``memory.memsw``), as Docker does, rather than failing.
    """
    swap = res.memory_swap_bytes or None
    if res.memory_bytes is None:
        if swap is not None and swap != -1:
            raise InvalidInput("resources.memory_swap_bytes: set memory_bytes as well")
        return {}
    if res.memory_bytes <= 0:
        raise InvalidInput("resources.memory_bytes: must be positive")
    out: dict[str, Any] = {"limit": res.memory_bytes}
    if swap is not None and swap != -1 and swap < res.memory_bytes:
        raise InvalidInput("resources.memory_swap_bytes: must be at least memory_bytes (or -1)")
    if swap_accounting:
        out["swap"] = 2 * res.memory_bytes if swap is None else swap
    return out


def build_resources(res: Resources, host: HostCgroups) -> dict[str, Any]:
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    memory = memory_resources(res, swap_accounting=host.swap_accounting)
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if res.cpu_quota_us is not None and res.cpu_quota_us > 0:
        cpu["quota"] = res.cpu_quota_us
        cpu["period"] = res.cpu_period_us or DEFAULT_CPU_PERIOD_US
    elif res.cpu_period_us:
        cpu["period"] = res.cpu_period_us
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit is not None and res.pids_limit > 0:
        out["pids"] = {"limit": res.pids_limit}
    return out


def _mounts(
    init_binary: Path, extra: Sequence[tuple[str, Path]], user: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", f"size={DEV_TMPFS_SIZE}"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={SHM_SIZE}"],
        },
        {
            "destination": INIT_PATH,
            "type": "bind",
            "source": str(init_binary),
            "options": ["bind", "ro", "nosuid", "nodev"],
        },
    ]
    added = [_bind(destination, str(source), readonly=False) for destination, source in extra]
    added.extend(user)
    added.sort(key=lambda m: len([p for p in m["destination"].split("/") if p]))
    return mounts + added


def _bind(destination: str, source: str, *, readonly: bool) -> dict[str, Any]:
    options = ["rbind", "rprivate", *(["ro"] if readonly else [])]
    return {"destination": destination, "type": "bind", "source": source, "options": options}


DEFAULT_TMPFS_MODE = 0o1777


def instance_mounts(mounts: Sequence[MountSpec], volume_path: Callable[[str], Path]) -> list[dict[str, Any]]:
    """The OCI entries of an instance's own mounts; ``volume_path`` maps a volume id to its data."""
    out = []
    for m in mounts:
        if m.type == MountType.VOLUME:
            out.append(_bind(m.destination, str(volume_path(m.source)), readonly=m.readonly))
        elif m.type == MountType.BIND:
            out.append(_bind(m.destination, m.source, readonly=m.readonly))
        elif m.type == MountType.TMPFS:
            options = ["nosuid", "nodev", "noexec"]
            if m.tmpfs_size is not None:
                options.append(f"size={m.tmpfs_size}")
            mode = DEFAULT_TMPFS_MODE if m.tmpfs_mode is None else m.tmpfs_mode
            options.append(f"mode={mode:o}")
            if m.readonly:
                options.append("ro")
            out.append({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": options})
        else:
            raise InvalidInput(f"mounts: unknown mount type {m.type!r}")
    return out


def build_config(
    spec: InstanceSpec,
    *,
    rootfs: Path,
    init_binary: Path,
    user: ResolvedUser,
    cgroups_path: str,
    mounts: Sequence[tuple[str, Path]] = (),
    host: HostCgroups | None = None,
    netns: Path | None = None,
    user_mounts: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The full ``config.json``. ``host`` defaults to this host's cgroup features. With ``netns``, the
    container joins that (agent-owned, already wired) network namespace instead of getting a new one."""
    host = host or detect_host_cgroups()
    proc = spec.process
    if not proc.args:
        raise InvalidInput("process.args: no command given (the image has no entrypoint or cmd)")
    hostname = spec.hostname or spec.id[:12]
    defaults = [("PATH", DEFAULT_PATH), ("HOSTNAME", hostname), ("HOME", user.home)]
    if proc.tty:
        defaults.append(("TERM", "xterm"))
    cwd = proc.cwd or "/"
    if not cwd.startswith("/"):
        raise InvalidInput(f"process.cwd: {cwd!r} is not an absolute path")
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")]
    if netns is not None:
        namespaces[-1]["path"] = str(netns)
    if host.version == 2:
        namespaces.append({"type": "cgroup"})
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": _user(user),
            "args": [
                INIT_PATH,
                *(["-t"] if proc.tty else []),
                *(["-i"] if proc.stdin or proc.tty else []),
                "--",
                *proc.args,
            ],
            "env": _with_defaults(proc.env, defaults),
            "cwd": cwd,
            "capabilities": capabilities(),
            "rlimits": _rlimits(),
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": spec.readonly_rootfs},
        "hostname": hostname,
        "mounts": _mounts(init_binary, mounts, user_mounts),
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "resources": build_resources(spec.resources, host),
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "seccomp": seccomp_profile(),
        },
    }


def build_exec_process(
    spec: ExecSpec, *, base_env: list[str], user: ResolvedUser, default_cwd: str
) -> dict[str, Any]:
    """The process JSON for ``runc exec --process``: the container's env overridden by the exec's.

    ``base_env`` is best the container's own ``config.json`` env, which has HOSTNAME and HOME; PATH
    (and TERM with a TTY) are defaulted here in any case, as for the main process.
    """
    if not spec.args:
        raise InvalidInput("args: no command given")
    env = merge_env(base_env, spec.env)
    defaults = [("PATH", DEFAULT_PATH)]
    if spec.tty:
        defaults.append(("TERM", "xterm"))
    env = _with_defaults(env, defaults)
    cwd = spec.cwd or default_cwd or "/"
    if not cwd.startswith("/"):
        raise InvalidInput(f"cwd: {cwd!r} is not an absolute path")
    process: dict[str, Any] = {
        "terminal": spec.tty,
        "user": _user(user),
        "args": list(spec.args),
        "env": env,
        "cwd": cwd,
        "capabilities": capabilities(),
        "rlimits": _rlimits(),
        "noNewPrivileges": True,
    }
    if spec.tty:
        # Set before the process starts; a resize after it is applied a moment later.
        rows, cols = DEFAULT_TTY_SIZE
        process["consoleSize"] = {"height": rows, "width": cols}
    return process
