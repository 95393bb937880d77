"""The OCI documents, as pure data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from atoll.agent.runtime.cgroups import HostCgroups
from atoll.agent.runtime.oci import INIT_PATH, build_config, build_exec_process, memory_resources
from atoll.agent.runtime.security import DEFAULT_CAPABILITIES, seccomp_profile
from atoll.agent.runtime.users import ResolvedUser
from atoll.model.errors import InvalidInput
from atoll.model.instance import InstanceSpec, ProcessSpec, Resources
from atoll.model.ports import ExecSpec

MIB = 1 << 20
V1 = HostCgroups(version=1, swap_accounting=True)


def config(process: ProcessSpec | None = None, host: HostCgroups = V1, **kw: Any) -> dict[str, Any]:
    spec = InstanceSpec(
        id="0123456789abcdef",
        name="web",
        project="p",
        image_id="sha256:x",
        layers=[],
        process=process or ProcessSpec(args=["app", "--flag"]),
        **kw,
    )
    return build_config(
        spec,
        rootfs=Path("/r"),
        init_binary=Path("/bin/atoll-init"),
        user=ResolvedUser(1000, 1000, [2000], "/home/app"),
        cgroups_path="/atoll/0123456789abcdef",
        mounts=[("/etc/hosts", Path("/i/hosts"))],
        host=host,
    )


def test_process() -> None:
    c = config()
    p = c["process"]
    assert p["args"] == [INIT_PATH, "--", "app", "--flag"]
    assert p["terminal"] is False
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    assert p["noNewPrivileges"] is True
    assert set(p["capabilities"]) == {"bounding", "effective", "permitted"}
    assert p["capabilities"]["bounding"] == list(DEFAULT_CAPABILITIES)
    assert "HOSTNAME=0123456789ab" in p["env"] and "HOME=/home/app" in p["env"]
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in p["env"])
    assert c["hostname"] == "0123456789ab"
    assert [m["destination"] for m in c["mounts"]][-2:] == [INIT_PATH, "/etc/hosts"]
    init_mount = c["mounts"][-2]
    assert init_mount["source"] == "/bin/atoll-init" and "ro" in init_mount["options"]
    assert "noexec" not in init_mount["options"]
    assert {n["type"] for n in c["linux"]["namespaces"]} == {"pid", "mount", "ipc", "uts", "network"}
    assert c["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert "/proc/kcore" in c["linux"]["maskedPaths"]


def test_tty_env_and_overrides() -> None:
    p = config(ProcessSpec(args=["sh"], env=["PATH=/x", "HOME=/h", "HOSTNAME=mine"], tty=True))["process"]
    assert p["args"] == [INIT_PATH, "-t", "-i", "--", "sh"]  # -i: the FIFO carries resizes
    assert sorted(p["env"]) == ["HOME=/h", "HOSTNAME=mine", "PATH=/x", "TERM=xterm"]
    p = config(ProcessSpec(args=["sh"], env=["TERM=dumb"], tty=True))["process"]
    assert "TERM=dumb" in p["env"] and "TERM=xterm" not in p["env"]


def test_cgroup_namespace_on_v2_only() -> None:
    c = config(host=HostCgroups(version=2, swap_accounting=True))
    assert {"type": "cgroup"} in c["linux"]["namespaces"]


def test_bad_input() -> None:
    with pytest.raises(InvalidInput, match=r"process\.args"):
        config(ProcessSpec(args=[]))
    with pytest.raises(InvalidInput, match=r"process\.cwd"):
        config(ProcessSpec(args=["x"], cwd="relative"))


@pytest.mark.parametrize(
    ("memory", "swap", "accounting", "expected"),
    [
        (None, None, True, {}),
        (32 * MIB, None, True, {"limit": 32 * MIB, "swap": 64 * MIB}),
        (32 * MIB, 0, True, {"limit": 32 * MIB, "swap": 64 * MIB}),
        (32 * MIB, -1, True, {"limit": 32 * MIB, "swap": -1}),
        (32 * MIB, 32 * MIB, True, {"limit": 32 * MIB, "swap": 32 * MIB}),
        (32 * MIB, 100 * MIB, True, {"limit": 32 * MIB, "swap": 100 * MIB}),
        (32 * MIB, None, False, {"limit": 32 * MIB}),
        (32 * MIB, 100 * MIB, False, {"limit": 32 * MIB}),
    ],
)
def test_swap_follows_docker(
    memory: int | None, swap: int | None, accounting: bool, expected: dict[str, int]
) -> None:
    res = Resources(memory_bytes=memory, memory_swap_bytes=swap)
    assert memory_resources(res, swap_accounting=accounting) == expected


def test_swap_errors() -> None:
    with pytest.raises(InvalidInput, match="memory_swap_bytes"):
        memory_resources(Resources(memory_swap_bytes=64 * MIB), swap_accounting=True)
    with pytest.raises(InvalidInput, match="memory_swap_bytes"):
        memory_resources(Resources(memory_bytes=64 * MIB, memory_swap_bytes=32 * MIB), swap_accounting=True)


def test_cpu_and_pids() -> None:
    res = config(resources=Resources(cpu_quota_us=50_000, cpu_shares=512, pids_limit=100))["linux"][
        "resources"
    ]
    assert res["cpu"] == {"quota": 50_000, "period": 100_000, "shares": 512}
    assert res["pids"] == {"limit": 100}


def test_exec_process() -> None:
    p = build_exec_process(
        ExecSpec(args=["sh"], env=["A=2", "B=3"], tty=True),
        base_env=["PATH=/bin", "A=1"],
        user=ResolvedUser(0, 0),
        default_cwd="/srv",
    )
    assert p["env"] == ["TERM=xterm", "PATH=/bin", "A=2", "B=3"]
    bare = build_exec_process(ExecSpec(args=["sh"]), base_env=[], user=ResolvedUser(0, 0), default_cwd="/")
    assert bare["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert "consoleSize" not in bare
    assert (p["cwd"], p["terminal"], p["noNewPrivileges"]) == ("/srv", True, True)
    assert p["consoleSize"] == {"height": 24, "width": 80}
    assert p["user"] == {"uid": 0, "gid": 0}
    with pytest.raises(InvalidInput, match="args"):
        build_exec_process(ExecSpec(args=[]), base_env=[], user=ResolvedUser(0, 0), default_cwd="/")


def test_seccomp_profile() -> None:
    profile = seccomp_profile("x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    denied = {n for rule in profile["syscalls"] if "args" not in rule for n in rule["names"]}
    assert {"kexec_load", "bpf", "mount", "unshare", "setns", "keyctl", "open_by_handle_at"} <= denied
    assert "ptrace" not in denied
    assert seccomp_profile("aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
