"""Containers under real runc: exit codes, logs, isolation, signals.

Nothing on the host watches a running container: once ``run_detached`` returns, the runtime has
exited and the tests only read the files the container's init wrote.
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from atoll.agent.runtime.logs import parse_time
from atoll.agent.runtime.security import DEFAULT_CAPABILITIES
from tests.runtime.conftest import Harness

# Bit numbers from linux/capability.h.
CAP_BITS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_MKNOD": 27,
    "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
DOCKER_CAPS = sum(1 << CAP_BITS[c] for c in DEFAULT_CAPABILITIES)


def now_ns() -> int:
    return parse_time(datetime.now(UTC).isoformat().replace("+00:00", "Z"))


def status_field(output: bytes, name: str) -> str:
    m = re.search(rb"^" + name.encode() + rb":\s*(\S+)", output, re.M)
    assert m, f"{name} not in {output!r}"
    return m.group(1).decode()


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_exit_codes(harness: Harness) -> None:
    async def body() -> None:
        ok, three, killed = await asyncio.gather(
            harness.run(["true"]),
            harness.run(["sh", "-c", "exit 3"]),
            harness.run(["sh", "-c", "kill -USR1 $$"]),
        )
        assert ok.exit_status() == (0, 0)
        assert three.exit_status() == (3, 0)
        assert killed.exit_status() == (128 + 10, 10)

    asyncio.run(body())


def test_logs_and_exit_file_are_written_with_nobody_watching(harness: Harness) -> None:
    async def body() -> None:
        before = now_ns()
        c = await harness.start(["sh", "-c", "sleep 0.3; echo out; echo err >&2; printf tail; exit 5"])
        # The runtime has exited: no process on the host but the container's own knows about it.
        # (crun returns once the init was told to start; for an instant the init itself may still
        # carry crun's command line, before it execs atoll-init.)
        assert [pid for pid in processes_mentioning(c.id) if pid != c.pid] == []
        assert c.exit_status() is None
        deadline = asyncio.get_running_loop().time() + 10
        while Path(f"/proc/{c.pid}").exists() and (Path(f"/proc/{c.pid}/stat").read_text().split()[2] != "Z"):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        after = now_ns()
        assert c.exit_status() == (5, 0)
        entries = c.entries()
        assert [(e.stream, e.data, e.partial) for e in entries] == [
            ("stdout", b"out\n", False),
            ("stderr", b"err\n", False),
            ("stdout", b"tail", True),
        ]
        for e in entries:
            assert before <= parse_time(e.time) <= after
        state = await harness.runtime.state(c.id)
        assert state is not None and state["status"] == "stopped"

    asyncio.run(body())


def test_background_processes_do_not_hold_the_container(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.run(["sh", "-c", "sleep 60 & echo started"], timeout=10)
        assert c.exit_status() == (0, 0)
        assert c.output() == b"started\n"

    asyncio.run(body())


def test_an_orphan_writing_forever_does_not_hold_the_exit(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.run(["sh", "-c", "yes & sleep 0.02; exit 2"], timeout=10)
        assert c.exit_status() == (2, 0)
        with c.log.open("rb") as f:
            assert f.readline().endswith(b" stdout F y\n")

    asyncio.run(body())


def test_tty(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.run(["sh", "-c", 'tty; echo "$TERM"; echo err >&2'], tty=True)
        assert c.exit_status() == (0, 0)
        entries = c.entries()
        assert {e.stream for e in entries} == {"stdout"}
        assert [e.data for e in entries] == [b"/dev/pts/0\r\n", b"xterm\r\n", b"err\r\n"]

    asyncio.run(body())


def test_environment_hostname_and_cwd(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.run(
            ["sh", "-c", 'hostname; echo "$HOSTNAME $HOME $PATH $FOO"; pwd'],
            env=["FOO=bar"],
            hostname="web-1",
            cwd="/tmp",
        )
        assert c.output().decode().splitlines() == [
            "web-1",
            "web-1 /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bar",
            "/tmp",
        ]

    asyncio.run(body())


def test_loopback_is_up(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.run(
            ["sh", "-c", "ip -o link show lo; ip -o addr show lo; ping -c 1 -W 2 127.0.0.1"]
        )
        out = c.output().decode()
        assert c.exit_status() == (0, 0), out
        assert ",UP" in out and "127.0.0.1/8" in out
        # The network namespace is new: nothing but lo.
        links = await harness.run(["sh", "-c", "ip -o link | wc -l"])
        assert links.output().strip() == b"1"

    asyncio.run(body())


def test_capabilities_no_new_privs_and_seccomp(harness: Harness) -> None:
    async def body() -> None:
        root = await harness.run(["cat", "/proc/self/status"])
        out = root.output()
        assert int(status_field(out, "CapEff"), 16) == DOCKER_CAPS
        assert int(status_field(out, "CapBnd"), 16) == DOCKER_CAPS
        assert int(status_field(out, "CapInh"), 16) == 0
        assert int(status_field(out, "CapAmb"), 16) == 0
        assert status_field(out, "NoNewPrivs") == "1"
        assert status_field(out, "Seccomp") == "2"
        app = await harness.run(["cat", "/proc/self/status"], user="app")
        assert int(status_field(app.output(), "CapEff"), 16) == 0
        assert int(status_field(app.output(), "CapBnd"), 16) == DOCKER_CAPS

    asyncio.run(body())


def test_denied_syscalls(harness: Harness) -> None:
    async def body() -> None:
        script = (
            "unshare -U true 2>/dev/null && echo unshare-allowed; "
            "unshare -n true 2>/dev/null && echo netns-allowed; "
            "mount -t tmpfs t /mnt 2>/dev/null && echo mount-allowed; "
            "echo done"
        )
        c = await harness.run(["sh", "-c", script])
        assert c.output() == b"done\n"
        # busybox date exits 0 even when it cannot set the clock; its message tells.
        clock = await harness.run(["date", "-s", "2000-01-01"])
        assert b"can't set date: Operation not permitted" in clock.output("stderr")

    asyncio.run(body())


def test_masked_and_readonly_paths(harness: Harness) -> None:
    async def body() -> None:
        # Paths this kernel lacks (kcore, sysrq-trigger without their config options) count as masked.
        script = (
            "for f in /proc/kcore /proc/keys /proc/timer_list; do "
            "  test -e $f && echo $f $(head -c 64 $f | wc -c); done; "
            "ls /sys/firmware | wc -l; "
            "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable; "
            "test -e /proc/sysrq-trigger && echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable; "
            "echo done"
        )
        c = await harness.run(["sh", "-c", script])
        lines = c.output("stdout").decode().splitlines()
        assert lines[-2:] == ["0", "done"]
        assert b"domainname: Read-only file system" in c.output("stderr")
        assert "/proc/keys 0" in lines and "/proc/timer_list 0" in lines
        assert all(line.endswith(" 0") for line in lines[:-2])

    asyncio.run(body())


def test_devices(harness: Harness) -> None:
    async def body() -> None:
        script = (
            "echo x > /dev/null && echo null-ok; "
            "head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; head -c 4 /dev/random | wc -c; "
            "echo x > /dev/full 2>/dev/null || echo full-refuses; "
            "test -c /dev/tty && echo tty-exists; test -e /dev/ptmx && echo ptmx-exists; "
            "mknod /tmp/sda b 8 0 && (head -c 1 /tmp/sda >/dev/null 2>&1 || echo disk-denied)"
        )
        c = await harness.run(["sh", "-c", script])
        assert c.output().split() == [
            b"null-ok",
            b"4",
            b"4",
            b"4",
            b"full-refuses",
            b"tty-exists",
            b"ptmx-exists",
            b"disk-denied",
        ]

    asyncio.run(body())


def test_readonly_rootfs(harness: Harness) -> None:
    async def body() -> None:
        script = (
            "touch /x 2>/dev/null && echo root-writable; "
            "touch /tmp/x 2>/dev/null && echo tmp-writable; "
            "touch /dev/x && echo dev-writable; touch /dev/shm/x && echo shm-writable"
        )
        c = await harness.run(["sh", "-c", script], readonly=True)
        assert c.output().split() == [b"dev-writable", b"shm-writable"]
        assert not (harness.rootfs / "x").exists()
        # The init binary sits in the runtime's /dev tmpfs, never in the image.
        assert not (harness.rootfs / "dev" / ".atoll-init").exists()

    asyncio.run(body())


def test_user_resolution(harness: Harness) -> None:
    async def body() -> None:
        app = await harness.run(["sh", "-c", 'id; echo "$HOME"'], user="app")
        assert app.output().decode().splitlines() == [
            # As under Docker (runc's rules), the supplementary groups are the memberships only.
            "uid=1000(app) gid=1000(app) groups=2000(extra)",
            "/home/app",
        ]
        numeric = await harness.run(["id"], user="4242:2000")
        assert numeric.output() == b"uid=4242 gid=2000(extra)\n"

    asyncio.run(body())


def test_sigterm_is_forwarded_by_init(harness: Harness) -> None:
    async def body() -> None:
        c = await harness.start(
            ["sh", "-c", 'trap "echo bye; exit 0" TERM; echo ready; while :; do sleep 0.05; done']
        )
        for _ in range(200):
            if b"ready" in c.output():
                break
            await asyncio.sleep(0.02)
        await harness.runtime.kill(c.id, "SIGTERM")
        await c.wait(10)
        assert c.exit_status() == (0, 0)
        assert c.output() == b"ready\nbye\n"

    asyncio.run(body())


def test_sigkill_leaves_no_exit_file(harness: Harness) -> None:
    """SIGKILL ends process 1 itself, so nothing writes the exit file: the agent records 137 for a
    stopped container without one (see ``exitfile``)."""

    async def body() -> None:
        c = await harness.start(["sleep", "60"])
        await harness.runtime.kill(c.id, "KILL")
        await c.wait(10)
        state = await harness.runtime.state(c.id)
        assert state is not None and state["status"] == "stopped"
        assert c.exit_status() is None
        assert os.path.getsize(c.exit_file) == 0
        # Idempotent on a stopped container.
        await harness.runtime.kill(c.id, "KILL")
        await harness.runtime.kill(c.id, "TERM", all_processes=True)

    asyncio.run(body())
