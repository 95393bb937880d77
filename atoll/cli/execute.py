"""``atoll exec``: run a command in a running instance, with the local stdin and terminal attached.

Output is read on the main thread; with ``-i`` a daemon thread copies stdin to the session and sends
end-of-file when stdin ends. With ``-t`` the local terminal is put in raw mode (when ``-i`` too) and its
size follows the window. The exit code is the command's.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from atoll.cli import context, terminal
from atoll.cli.output import fail, write_frames
from atoll.cli.parsing import parse_env
from atoll.client import AtollConnectionError, ExecSession
from atoll.schemas import ExecStart

app = typer.Typer()

_READ_SIZE = 1 << 16


def stdin_reader(fd: int | None) -> Callable[[int], bytes]:
    """Reads straight from the descriptor when there is one: a daemon thread blocked inside the buffered
    ``sys.stdin`` would hold its lock and abort the interpreter at exit."""
    if fd is not None:
        return lambda size: os.read(fd, size)
    source = typer.get_binary_stream("stdin")
    read: Callable[[int], bytes] = getattr(source, "read1", source.read)
    return read


def pump_stdin(read: Callable[[int], bytes], session: ExecSession) -> None:
    """Copy what ``read`` returns into the session until end of file, then close the session's stdin."""
    try:
        while data := read(_READ_SIZE):
            session.send_stdin(data)
        session.close_stdin()
    except (AtollConnectionError, OSError, ValueError):
        # The command ended (or the session broke) first; the main thread reports what matters.
        return


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Instance name or id.")],
    command: Annotated[list[str], typer.Argument(help="Command and arguments.")],
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Attach stdin.")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a pseudo-TTY.")] = False,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, or KEY to copy.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="user[:group], names or ids.")] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", "-w", help="Working directory.")] = None,
) -> None:
    """Run a command in a running instance."""
    stdin_fd = terminal.fileno(sys.stdin)
    stdout_fd = terminal.fileno(sys.stdout)
    if tty and interactive and not terminal.is_tty(stdin_fd):
        fail("the input device is not a TTY")
    spec = ExecStart(
        args=command, env=parse_env(env or []), cwd=workdir or "", user=user or "", tty=tty, stdin=interactive
    )
    with context.api(ctx).exec(ref, spec) as session, contextlib.ExitStack() as stack:
        if tty and interactive and stdin_fd is not None:
            stack.enter_context(terminal.raw_mode(stdin_fd))
        if tty and terminal.is_tty(stdout_fd) and stdout_fd is not None:
            stack.enter_context(terminal.forward_resizes(stdout_fd, session.resize))
        if interactive:
            pump = threading.Thread(target=pump_stdin, args=(stdin_reader(stdin_fd), session), daemon=True)
            pump.start()
        write_frames(session)
    raise typer.Exit(session.exit_code if session.exit_code is not None else 1)
