"""Printing: errors in docker's words, tables, JSON, and the bytes of output streams."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from atoll.client import AtollConnectionError, AtollError
from atoll.schemas import STREAM_STDERR

T = TypeVar("T")


class CliError(Exception):
    """A problem on this side (a bad source path, say): a plain ``Error: ...``, not a usage message."""


USER_ERRORS = (AtollError, AtollConnectionError, ValidationError, OSError, CliError)
"""What a command may let through to be printed as ``Error: ...`` (and exit 1)."""


def error_message(exc: BaseException) -> str:
    if isinstance(exc, AtollError | AtollConnectionError):
        return exc.message
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            parts.append(f"invalid {loc}: {err['msg']}" if loc else err["msg"])
        return "; ".join(parts)
    return str(exc)


def print_error(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)


def fail(exc_or_message: BaseException | str, code: int = 1) -> NoReturn:
    message = exc_or_message if isinstance(exc_or_message, str) else error_message(exc_or_message)
    print_error(message)
    raise typer.Exit(code)


class AtollGroup(TyperGroup):
    """The root group: an error meant for the user becomes ``Error: <message>`` on stderr and exit 1."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer may vendor click)
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            fail(exc)


def for_each(
    refs: Sequence[str], action: Callable[[str], T], *, show: Callable[[str, T], object] | None = None
) -> list[T]:
    """Apply ``action`` to each ref as docker does: report a failure and go on; exit 1 at the end if any
    failed. ``show`` prints each result as it comes (default: the ref, as ``docker stop`` does)."""
    results, failed = collect(refs, action, show=show or (lambda ref, _: typer.echo(ref)))
    if failed:
        raise typer.Exit(1)
    return results


def collect(
    refs: Sequence[str], action: Callable[[str], T], *, show: Callable[[str, T], object] | None = None
) -> tuple[list[T], bool]:
    """``for_each`` without the exit: the results, and whether anything failed."""
    results: list[T] = []
    failed = False
    for ref in refs:
        try:
            result = action(ref)
        except USER_ERRORS as exc:
            print_error(error_message(exc))
            failed = True
            continue
        results.append(result)
        if show is not None:
            show(ref, result)
    return results, failed


def inspect_each(refs: Sequence[str], inspect: Callable[[str], BaseModel]) -> None:
    """``docker inspect``'s way: the JSON of every ref found, errors for the others, exit 1 if any failed."""
    found, failed = collect(refs, inspect)
    print_json(found)
    if failed:
        raise typer.Exit(1)


def stdout_console() -> Console:
    # A pipe gets the whole table, however wide; a terminal gets its own width.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 10_000)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 3, 0, 0))
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*row)
    console = stdout_console()
    if console.is_terminal:
        console.print(table)
        return
    # For pipes: plain lines without the padding of the last column, as docker prints them.
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        typer.echo(line.rstrip())


def print_json(models: Sequence[BaseModel]) -> None:
    typer.echo(json.dumps([m.model_dump(mode="json") for m in models], indent=4))


def write_frames(frames: Iterable[tuple[int, bytes]]) -> None:
    """Copy (stream id, bytes) frames to this process's stdout and stderr as they come."""
    out = typer.get_binary_stream("stdout")
    err = typer.get_binary_stream("stderr")
    for stream, data in frames:
        target = err if stream == STREAM_STDERR else out
        target.write(data)
        target.flush()
