"""A thin async wrapper over the runc/crun command line, one method per runtime command.

Both runtimes take the same commands and flags for what we use, so one class drives either. Every
call is a subprocess without a shell. Idempotence lives here, because the agent converges state and
must be able to repeat any step: ``kill`` of a stopped or unknown container and ``delete`` of an
unknown one succeed; a failed ``run`` deletes what it half-made.

``run_detached`` is the heart of the "no helper process" design. The runtime is started with its stdio
on /dev/null (the container's init inherits it, and nothing of ours should leak in) and with the log
and exit files at fds 3 and 4 (``--preserve-fds 2``), then it exits as soon as the container runs. Its
own errors are read back from ``--log`` (JSON lines). It is started in a new session, so that a Ctrl-C
aimed at the agent's terminal never reaches a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal as signals
import tempfile
from pathlib import Path
from typing import Any

from atoll.agent.runtime.cgroups import remove_cgroup
from atoll.agent.runtime.exec import RuntimeExec
from atoll.agent.runtime.oci import DEFAULT_PATH, INIT_PATH
from atoll.agent.runtime.owncgroups import OwnCgroups
from atoll.agent.runtime.rootpath import find_executable, read_file_in_root
from atoll.agent.watch import exited
from atoll.model.errors import InvalidInput, RuntimeFailure

log = logging.getLogger(__name__)

RUNTIME_LOG = "runtime.log"
"""The runtime's own log of a ``run``, in the bundle; removed once the container runs."""

_NOT_FOUND_HINTS = ("does not exist", "not found", "no such file")


async def _wait_pid(pid: int) -> int:
    """Wait for a child we spawned ourselves (not through asyncio), without a thread."""
    try:
        await exited(pid)
    except BaseException:  # cancelled: still reap it, or it stays a zombie
        asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _signal_number(name: str) -> int:
    """``KILL``, ``SIGKILL`` or ``9`` as a number (the forms the runtimes' ``kill`` accepts)."""
    if name.isdigit():
        return int(name)
    upper = name.upper()
    return int(signals.Signals[upper if upper.startswith("SIG") else f"SIG{upper}"])


def _error_message(log_file: Path, fallback: str) -> str:
    """The runtime's error lines from its JSON log, most specific (last) first."""
    messages: list[str] = []
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            if line.strip():
                messages.append(line.strip())
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "fatal", "panic"):
            messages.append(str(record.get("msg", "")).strip())
    messages = [m for m in messages if m]
    return messages[-1] if messages else fallback


class OciRuntime:
    """One runtime. With ``launcher`` (crun on a cgroup v1 host) the agent manages the containers'
    cgroups itself (``owncgroups.py``): crun runs with its cgroup manager disabled, and ``run`` and
    ``exec`` go through ``atoll-launch``, which joins the container's cgroups before it execs crun."""

    def __init__(self, name: str, binary: str, root: Path, *, launcher: Path | None = None) -> None:
        self.name = name
        self.binary = binary
        self.root = root
        self.launcher = launcher
        self._cgroups: dict[str, OwnCgroups] = {}
        """With ``launcher``: the cgroups of the containers this process started (others are looked
        up through their bundle's config)."""

    def __repr__(self) -> str:
        own = f", launcher={str(self.launcher)!r}" if self.launcher else ""
        return f"OciRuntime({self.name!r}, {self.binary!r}, {str(self.root)!r}{own})"

    @property
    def own_cgroups(self) -> bool:
        """True when the agent, not the runtime, creates and configures the containers' cgroups."""
        return self.launcher is not None

    @property
    def argv(self) -> list[str]:
        """The binary with its global flags (for commands that need no cgroup)."""
        flags = ["--cgroup-manager=disabled"] if self.own_cgroups else []
        return [self.binary, *flags, "--root", str(self.root)]

    def _launch_argv(
        self,
        cgroup: OwnCgroups | None,
        *,
        hide_controllers: bool,
        exec_pid_file: Path | None = None,
        init_pid_file: Path | None = None,
    ) -> list[str]:
        """``argv`` behind ``atoll-launch``: in the container's cgroups and, for ``run``, with the
        cgroup2 controllers hidden from crun; for ``exec``, crun leaves the cgroups again once the
        process exists (see atoll-launch.c)."""
        if self.launcher is None:
            return self.argv
        joins = [a for pair in (cgroup.join_pairs() if cgroup else []) for a in ("-c", pair)]
        out = [str(self.launcher), *(["-m"] if hide_controllers else []), *joins]
        if exec_pid_file is not None:
            out += ["-o", str(exec_pid_file)]
        if init_pid_file is not None:
            out += ["-w", str(init_pid_file)]
        return [*out, "--", *self.argv]

    def _cgroup_of(self, bundle: str | Path) -> OwnCgroups:
        config = json.loads((Path(bundle) / "config.json").read_text())
        return OwnCgroups(str(config["linux"]["cgroupsPath"]))

    async def _own_cgroup(self, container_id: str) -> OwnCgroups:
        known = self._cgroups.get(container_id)
        if known is not None:
            return known
        state = await self.state(container_id)
        if state is None:
            raise RuntimeFailure(f"{self.name}: container {container_id} does not exist")
        return self._cgroups.setdefault(container_id, self._cgroup_of(state["bundle"]))

    async def _remove_own_cgroup(self, cgroup: OwnCgroups) -> None:
        """What crun's manager does at delete. The init is gone, but the last processes of its pid
        namespace may take a moment to leave the cgroup."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while True:
            try:
                remove_cgroup(f"/{cgroup.rel}")
                return
            except RuntimeFailure:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.005)

    async def _call(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.argv,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace").strip()

    async def run_detached(
        self,
        container_id: str,
        bundle: Path,
        *,
        log_fd: int,
        exit_fd: int,
        pid_file: Path,
        stdin_fd: int | None = None,
    ) -> int:
        """Create and start the container from ``bundle/config.json``; return its init's host pid.

        The log and exit files become the init's fds 3 and 4, and ``stdin_fd`` (the stdin FIFO of an
        instance with stdin) its fd 5.

        A container that already exists under this id is refused, never touched: cleaning up after a
        failed run must not delete somebody else's container.
        """
        if self._known(container_id):
            if await self.state(container_id) is not None:
                raise RuntimeFailure(
                    f"{self.name} run {container_id}: a container with this id already exists"
                )
            # A state directory the runtime cannot read (a crash mid-create): clear it, or the id is lost.
            await self.delete(container_id, force=True)
        self.root.mkdir(parents=True, exist_ok=True)
        log_file = bundle / RUNTIME_LOG
        log_file.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
        cgroup: OwnCgroups | None = None
        if self.own_cgroups:
            cgroup = self._cgroup_of(bundle)
            config = json.loads((bundle / "config.json").read_text())
            cgroup.create(config["linux"].get("resources") or {})
            self._cgroups[container_id] = cgroup
        argv = [
            *self._launch_argv(cgroup, hide_controllers=True, init_pid_file=pid_file),
            "--log",
            str(log_file),
            "--log-format",
            "json",
            "run",
            "--detach",
            "--preserve-fds",
            "2" if stdin_fd is None else "3",
            "--pid-file",
            str(pid_file),
            "--bundle",
            str(bundle),
            container_id,
        ]
        # Move the two files above any fd the dup2 targets could clobber (they may be 3 or 4 here).
        passed = (log_fd, exit_fd) if stdin_fd is None else (log_fd, exit_fd, stdin_fd)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in passed]
        try:
            pid = os.posix_spawn(
                argv[0],
                argv,
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                    *((os.POSIX_SPAWN_DUP2, fd, 3 + k) for k, fd in enumerate(high)),
                ],
                setsid=True,
            )
        finally:
            for fd in high:
                os.close(fd)
        code = await _wait_pid(pid)
        try:
            if code != 0:
                raise RuntimeFailure(
                    f"{self.name} run {container_id}: {_error_message(log_file, f'exit status {code}')}"
                )
            try:
                init_pid = int(pid_file.read_text().strip())
            except (OSError, ValueError) as exc:
                raise RuntimeFailure(f"{self.name} run {container_id}: no pid file ({exc})") from None
        except BaseException:
            with contextlib.suppress(RuntimeFailure, OSError):
                await self.delete(container_id, force=True)
            if cgroup is not None:  # ours to remove, as the runtime's manager would have
                with contextlib.suppress(RuntimeFailure, OSError):
                    remove_cgroup(f"/{cgroup.rel}")
            raise
        log_file.unlink(missing_ok=True)
        return init_pid

    def _known(self, container_id: str) -> bool:
        return (self.root / container_id).exists()

    async def state(self, container_id: str) -> dict[str, Any] | None:
        """The runtime's state document (``status``: created, running, paused, stopped), or None."""
        code, out, err = await self._call("state", container_id)
        if code == 0:
            state: dict[str, Any] = json.loads(out)
            return state
        if not self._known(container_id) or any(h in err.lower() for h in _NOT_FOUND_HINTS):
            return None
        raise RuntimeFailure(f"{self.name} state {container_id}: {err or f'exit status {code}'}")

    async def _absent_or_stopped(self, container_id: str) -> bool:
        with contextlib.suppress(RuntimeFailure):
            state = await self.state(container_id)
            return state is None or state.get("status") == "stopped"
        return False

    async def kill(self, container_id: str, signal: str, *, all_processes: bool = False) -> None:
        if all_processes and self.own_cgroups:
            with contextlib.suppress(RuntimeFailure, OSError):
                cgroup = await self._own_cgroup(container_id)
                cgroup.kill_all(_signal_number(signal))
                if cgroup.frozen():
                    cgroup.thaw()  # a frozen task does not die until it is thawed
            all_processes = False  # and the init through the runtime, as ever
        args = ["kill", *(["--all"] if all_processes else []), container_id, signal]
        code, _, err = await self._call(*args)
        # ESRCH: the init exited between our look and the signal. Its state can still say "running"
        # until the exit is reaped (a zombie), but there is nothing left to signal.
        gone = "no such process" in err.lower()
        if code != 0 and not gone and not await self._absent_or_stopped(container_id):
            raise RuntimeFailure(f"{self.name} kill {container_id} {signal}: {err or f'exit status {code}'}")

    async def delete(self, container_id: str, *, force: bool = False) -> None:
        if not self._known(container_id):
            return  # no state directory: the runtime has nothing to delete (and would only say so)
        cgroup: OwnCgroups | None = None
        if self.own_cgroups:
            with contextlib.suppress(RuntimeFailure, OSError, KeyError, ValueError):
                cgroup = await self._own_cgroup(container_id)
            if force and cgroup is not None and cgroup.frozen():
                cgroup.thaw()  # crun's forced delete kills the init, which must be able to die
        await self._delete(container_id, force=force)
        if cgroup is not None:
            self._cgroups.pop(container_id, None)
            await self._remove_own_cgroup(cgroup)

    async def _delete(self, container_id: str, *, force: bool) -> None:
        code, _, err = await self._call("delete", *(["--force"] if force else []), container_id)
        if code != 0 and self._known(container_id):
            state = await self.state(container_id)
            if state is not None and force and state.get("status") == "stopped":
                # `delete --force` freezes the cgroup before killing; if the container stops at that
                # moment runc fails ("invalid state transition from stopped to paused"). A stopped
                # container needs no force.
                code, _, err = await self._call("delete", container_id)
                state = await self.state(container_id) if code != 0 else None
            if state is not None:
                raise RuntimeFailure(f"{self.name} delete {container_id}: {err or f'exit status {code}'}")

    async def pause(self, container_id: str) -> None:
        if self.own_cgroups:
            cgroup = await self._own_cgroup(container_id)
            await asyncio.to_thread(cgroup.freeze)
            return
        code, _, err = await self._call("pause", container_id)
        if code != 0:
            raise RuntimeFailure(f"{self.name} pause {container_id}: {err or f'exit status {code}'}")

    async def resume(self, container_id: str) -> None:
        if self.own_cgroups:
            cgroup = await self._own_cgroup(container_id)
            await asyncio.to_thread(cgroup.thaw)
            return
        code, _, err = await self._call("resume", container_id)
        if code != 0:
            raise RuntimeFailure(f"{self.name} resume {container_id}: {err or f'exit status {code}'}")

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Apply OCI ``linux.resources`` to a running container (``update -r``)."""
        if self.own_cgroups:
            cgroup = await self._own_cgroup(container_id)
            await asyncio.to_thread(cgroup.update, resources)
            return
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(resources, f)
            f.flush()
            code, _, err = await self._call("update", "-r", f.name, container_id)
        if code != 0:
            raise RuntimeFailure(f"{self.name} update {container_id}: {err or f'exit status {code}'}")

    async def list(self) -> list[dict[str, Any]]:
        if not self.root.exists():
            return []
        code, out, err = await self._call("list", "--format", "json")
        if code != 0:
            raise RuntimeFailure(f"{self.name} list: {err or f'exit status {code}'}")
        items: list[dict[str, Any]] | None = json.loads(out or "null")
        return items or []

    async def exec(self, container_id: str, process: dict[str, Any], *, stdin: bool = False) -> RuntimeExec:
        """Start ``process`` (from ``oci.build_exec_process``) in a running container.

        The executable is looked up first through the init's ``/proc/<pid>/root``, which sees the
        container's own mounts (volumes included), so "not found" is a clear message and exit code 127
        rather than a runtime error. Pass ``stdin=ExecSpec.stdin``: without it the process reads
        /dev/null (as ``docker exec`` without ``-i``) instead of a pipe that must be closed. A TTY is
        always writable.
        """
        state = await self.state(container_id)
        if state is None or state.get("status") != "running":
            raise RuntimeFailure(f"exec: container {container_id} is not running")
        args: list[str] = list(process.get("args") or [])
        if not args:
            raise InvalidInput("args: no command given")
        path_env = next((e[5:] for e in process.get("env", []) if e.startswith("PATH=")), DEFAULT_PATH)
        root = Path(f"/proc/{state['pid']}/root")
        cwd = str(process.get("cwd") or "/")
        if find_executable(root, args[0], path_env, cwd) is None:
            if "/" in args[0] and read_file_in_root(root, args[0], limit=0) is not None:
                return RuntimeExec.failed(f'exec: "{args[0]}": permission denied', 126)
            return RuntimeExec.failed(f'exec: "{args[0]}": executable file not found in $PATH', 127)
        if process.get("terminal") and self.name == "crun":
            # crun sizes the container's pty only once the process runs: let init wait for it.
            process = {**process, "args": [INIT_PATH, "--tty-exec", "--", *args]}
        if not self.own_cgroups:
            return await RuntimeExec.start(self.argv, container_id, process, stdin=stdin)
        cgroup = self._cgroups.get(container_id) or self._cgroup_of(state["bundle"])

        def argv(pid_file: Path) -> list[str]:
            return self._launch_argv(cgroup, hide_controllers=False, exec_pid_file=pid_file)

        return await RuntimeExec.start(argv, container_id, process, stdin=stdin)
