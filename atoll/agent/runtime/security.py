"""The security policy every container gets: Docker's defaults, never anything wider.

Why Docker's: it is what images are written and tested against, so software that runs under Docker
runs here, and nothing that Docker forbids becomes possible by moving a workload to Atoll.

- Capabilities: Docker's default set (no SYS_ADMIN, NET_ADMIN, SYS_PTRACE, ...). Only the bounding,
  effective and permitted sets are filled; inheritable and ambient stay empty (CVE-2022-24769), so a
  non-root process has no capabilities at all after its execve, exactly as under Docker.
- Masked and read-only paths: the kernel interfaces under /proc and /sys that leak host information
  or allow host-wide changes.
- Seccomp: Docker's profile is an allow-list that must track every new syscall; ours is the inverse, a
  deny-list of the syscalls Docker's profile refuses to an unprivileged container because they act on
  the whole host (modules, kexec, clocks, swap, keyrings, mounts, BPF, perf, namespaces, io_uring).
  Everything not listed is allowed and then still subject to the missing capabilities. Denied calls
  fail with EPERM, as under Docker, so programs see an ordinary permission error rather than a crash.
  ``clone3`` fails with ENOSYS so that libcs fall back to ``clone``, whose namespace flags can be
  filtered (seccomp cannot inspect clone3's arguments, which live in memory). ``ptrace`` stays allowed
  as in Docker on kernels >= 4.8: without CAP_SYS_PTRACE it only reaches the caller's own processes.
"""

from __future__ import annotations

import platform
from typing import Any

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

EPERM = 1
ENOSYS = 38

DENIED_SYSCALLS: tuple[str, ...] = (
    # Kernel code and the running kernel itself.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "bpf",
    "perf_event_open",
    "lookup_dcookie",
    "_sysctl",
    "syslog",
    # Host-wide state: clocks, swap, reboot, accounting, quotas, ports.
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "iopl",
    "ioperm",
    "vhangup",
    # The kernel keyring is not namespaced.
    "keyctl",
    "add_key",
    "request_key",
    # Mounts and namespaces: a container must not rearrange its own confinement.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    # File handles bypass path-based confinement (the "shocker" escape).
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    # Reading or comparing other processes' memory; userfaultfd eases kernel exploitation.
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "userfaultfd",
    # Obsolete or x86-only interfaces with a history of bugs.
    "uselib",
    "vm86",
    "vm86old",
    "modify_ldt",
    # io_uring bypasses seccomp for the operations it performs (Docker denies it since 25.0).
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)

# clone(2) flags that create namespaces; the first argument is tested bit by bit.
_CLONE_NAMESPACE_FLAGS: tuple[int, ...] = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

_ARCHITECTURES: dict[str, list[str]] = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "armv7l": ["SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}


def capabilities() -> dict[str, list[str]]:
    """The OCI ``process.capabilities`` object (the same for root and non-root users, as in Docker)."""
    caps = list(DEFAULT_CAPABILITIES)
    return {"bounding": caps, "effective": list(caps), "permitted": list(caps)}


def seccomp_profile(machine: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for this host's architecture.

    Syscalls that do not exist on an architecture are skipped by the runtime, so one list serves all.
    """
    arch = machine or platform.machine()
    syscalls: list[dict[str, Any]] = [
        {"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
    ]
    # s390 swaps clone's first two arguments.
    flags_arg = 1 if arch == "s390x" else 0
    for flag in _CLONE_NAMESPACE_FLAGS:
        syscalls.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": flags_arg, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": _ARCHITECTURES.get(arch, []),
        "syscalls": syscalls,
    }
