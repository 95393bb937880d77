"""The local terminal during ``exec -t``: raw mode, and window size changes forwarded as resizes."""

from __future__ import annotations

import contextlib
import os
import signal
import termios
import tty
from collections.abc import Callable, Iterator
from types import FrameType

Resize = Callable[[int, int], None]
"""Called with (rows, cols)."""


def fileno(stream: object) -> int | None:
    """The descriptor behind a stream, or ``None`` (as for the in-memory streams of tests)."""
    get = getattr(stream, "fileno", None)
    if get is None:
        return None
    try:
        return int(get())
    except (OSError, ValueError):
        return None


def is_tty(fd: int | None) -> bool:
    return fd is not None and os.isatty(fd)


def size(fd: int) -> tuple[int, int] | None:
    try:
        cols, rows = os.get_terminal_size(fd)
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Keys go through as typed (Ctrl-C included) and output is not post-processed. The terminal is
    restored on the way out, also when SIGTERM or SIGHUP end the command."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    saved = termios.tcgetattr(fd)
    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def forward_resizes(fd: int, resize: Resize) -> Iterator[None]:
    """Send the current size now and on every SIGWINCH, until the block ends."""

    def send() -> None:
        current = size(fd)
        if current is not None:
            with contextlib.suppress(Exception):
                resize(*current)

    def on_winch(signum: int, frame: FrameType | None) -> None:
        send()

    previous = signal.signal(signal.SIGWINCH, on_winch)
    try:
        send()
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
