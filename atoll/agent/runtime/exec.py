"""Processes started inside a running container with ``runc exec`` (or crun's), as ``ExecProcess``.

Unlike the container's main process, an exec is tied to its client: it lives as long as the runtime's
``exec`` command, which stays in the foreground, relays the streams and exits with the process's status.
So the agent can use an ordinary child process here.

- Without a TTY the runtime's stdin, stdout and stderr are pipes to us.
- With a TTY the runtime creates the pty inside the container and relays it to its own stdio, which
  must itself be a terminal: it is the slave of a pty pair of ours, and we read and write the master.
  All output is then "stdout". A resize sets our pty's size and sends SIGWINCH to the runtime, which
  copies the size to the container's pty (runc does; crun does not, so the container's pty, the
  process's stdin, is also resized directly through /proc). (``--console-socket`` would hand us the
  container's pty directly, but runc accepts it only with ``--detach``, and a detached exec's exit
  code is lost to us.)
- ``kill`` signals the process itself (its host pid comes from ``--pid-file``), since SIGKILL sent to the
  runtime could not be forwarded.
- When the runtime cannot start the process at all (no such executable, ...), its message comes out on
  "stderr" and the exit code follows the shell: 127 for not found, 126 for not executable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import struct
import tempfile
import termios
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from atoll.agent.runtime.oci import DEFAULT_TTY_SIZE

_READ_SIZE = 1 << 16
_RUNTIME_ERROR = 255  # what runc and crun exit with when they, not the process, failed


async def _fd_ready(fd: int, *, write: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def fire() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, fire)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


def _resize_terminal_of(pid: int | None, rows: int, cols: int) -> None:
    """Set the size of the terminal the process reads from, directly: runc copies our pty's size to
    the container's on SIGWINCH, crun does not. Reopening its stdin through /proc reaches the same
    pty; the kernel signals the process only if the size changed, so doing both is harmless."""
    if pid is None:
        return
    with contextlib.suppress(OSError):
        fd = os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if os.isatty(fd):
                fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        finally:
            os.close(fd)


def _shell_code(returncode: int, stderr: bytes) -> int:
    """The process's exit code from the runtime's, mapping "could not exec" as a shell would."""
    if returncode < 0:
        return 128 - returncode
    if returncode == _RUNTIME_ERROR:
        text = stderr.decode("utf-8", "replace").lower()
        if "not found" in text or "no such file" in text:
            return 127
        if "permission denied" in text or "exec format error" in text:
            return 126
    return returncode


class RuntimeExec:
    """One exec'd process. Create with ``start``; implements ``atoll.model.ports.ExecProcess``."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process | None,
        workdir: Path | None,
        *,
        master: int | None = None,
        early_error: bytes = b"",
        code: int | None = None,
    ) -> None:
        self._proc = proc
        self._workdir = workdir
        self._master = master
        self._stdin_open = master is not None or (proc is not None and proc.stdin is not None)
        self._stderr_seen = early_error
        self._pending_error = early_error
        self._code = code
        self._known_pid = 0

    @classmethod
    def failed(cls, message: str, code: int) -> RuntimeExec:
        """An exec that never started: ``message`` is its stderr and ``code`` its exit code."""
        return cls(None, None, early_error=message.encode() + b"\n", code=code)

    @classmethod
    async def start(
        cls,
        runtime_argv: list[str] | Callable[[Path], list[str]],
        container_id: str,
        process: dict[str, Any],
        *,
        stdin: bool = False,
    ) -> RuntimeExec:
        """Start ``process`` (OCI process JSON) in the container. ``runtime_argv`` is the runtime
        binary with its global flags, or makes them given the path of the process's pid file."""
        workdir = Path(tempfile.mkdtemp(prefix="atoll-exec-"))
        try:
            process_file = workdir / "process.json"
            process_file.write_text(json.dumps(process))
            pid_file = workdir / "pid"
            argv = runtime_argv(pid_file) if callable(runtime_argv) else runtime_argv
            args = [*argv, "exec", "--process", str(process_file), "--pid-file", str(pid_file)]
            if process.get("terminal"):
                return await cls._start_tty(args, container_id, workdir)
            proc = await asyncio.create_subprocess_exec(
                *args,
                container_id,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            return cls(proc, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    @classmethod
    async def _start_tty(cls, args: list[str], container_id: str, workdir: Path) -> RuntimeExec:
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *DEFAULT_TTY_SIZE, 0, 0))
            # No echo or line editing on our side, from the start: input written before the runtime
            # makes this terminal raw itself must reach the container's pty untouched. (The runtime
            # turns output processing back on, so lines come out ending in \r\n, as from any tty.)
            tty.setraw(slave)
            proc = await asyncio.create_subprocess_exec(
                *args,
                "--tty",
                container_id,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return cls(proc, workdir, master=master)

    def _pid(self) -> int | None:
        if self._workdir is None:
            return None
        try:
            text = (self._workdir / "pid").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    async def pid(self) -> int:
        """The host pid from the runtime's ``--pid-file``, which it writes once the process exists: wait
        for it briefly (a start still under way), and keep it, since the file goes when the exec ends."""
        deadline = asyncio.get_running_loop().time() + 2
        while not self._known_pid:
            pid = self._pid()
            if pid is not None:
                self._known_pid = pid
                break
            running = self._proc is not None and self._proc.returncode is None and self._workdir is not None
            if not running or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        return self._known_pid

    async def write(self, data: bytes) -> None:
        if not self._stdin_open:
            raise BrokenPipeError(errno.EPIPE, "stdin is closed")
        if self._master is not None:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self._master, view) :]
                except BlockingIOError:
                    await _fd_ready(self._master, write=True)
            return
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    async def close_stdin(self) -> None:
        """Close the process's stdin. With a TTY there is no separate stdin: further writes just fail."""
        if not self._stdin_open:
            return
        self._stdin_open = False
        if self._master is None and self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
            with contextlib.suppress(OSError):
                await self._proc.stdin.wait_closed()

    async def resize(self, rows: int, cols: int) -> None:
        if self._master is not None and self._proc is not None and self._proc.returncode is None:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGWINCH)
            _resize_terminal_of(self._pid(), rows, cols)

    async def _read_master(self) -> bytes:
        assert self._master is not None
        while True:
            try:
                return os.read(self._master, _READ_SIZE)
            except BlockingIOError:
                await _fd_ready(self._master)
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave end is closed: the process is gone
                    return b""
                raise

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        if self._pending_error:
            error, self._pending_error = self._pending_error, b""
            yield "stderr", error
        if self._master is not None:
            while chunk := await self._read_master():
                yield "stdout", chunk
            self.close()
            return
        if self._proc is None:
            return
        readers = {
            name: stream
            for name, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr))
            if stream is not None
        }
        tasks: dict[asyncio.Future[bytes], str] = {
            asyncio.ensure_future(stream.read(_READ_SIZE)): name for name, stream in readers.items()
        }
        try:
            while tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    name = tasks.pop(task)
                    chunk = task.result()
                    if not chunk:
                        continue
                    if name == "stderr":
                        self._stderr_seen = (self._stderr_seen + chunk)[-4096:]
                    tasks[asyncio.ensure_future(readers[name].read(_READ_SIZE))] = name
                    yield name, chunk
        finally:
            for task in tasks:
                task.cancel()

    async def wait(self) -> int:
        if self._code is None:
            assert self._proc is not None
            returncode = await self._proc.wait()
            self._code = _shell_code(returncode, self._stderr_seen)
            self._remove_workdir()
        return self._code

    def _remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    async def kill(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        pid = self._pid()
        with contextlib.suppress(ProcessLookupError):
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            else:
                self._proc.kill()
        self._remove_workdir()  # a killed session may never be waited for

    def close(self) -> None:
        """Release the terminal early. ``output()`` does it by itself when the output ends; this is
        for a caller that stops reading before that."""
        if self._master is not None:
            os.close(self._master)
            self._master = None
        if self._proc is None or self._proc.returncode is not None:
            self._remove_workdir()
