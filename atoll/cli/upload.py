"""What ``image import`` and ``image build`` upload: a file, a directory tarred on the fly, or stdin; and a
progress bar on stderr while it goes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from atoll.cli.output import CliError, print_error, stderr_console
from atoll.client import UploadSource, estimate_tar_size, tar_directory
from atoll.client.uploads import body_size

DirCheck = Callable[[Path], str | None]
"""Returns why a directory cannot be uploaded, or ``None`` when it can."""


@dataclass(frozen=True)
class Upload:
    body: UploadSource
    size: int | None
    """Exact, for a Content-Length; ``None`` when unknown (stdin, a directory tarred on the fly)."""
    total: int | None
    """For the progress bar; an estimate for a directory."""
    label: str


@contextlib.contextmanager
def open_source(source: str, check_dir: DirCheck | None = None) -> Iterator[Upload]:
    if source == "-":
        yield Upload(typer.get_binary_stream("stdin"), None, None, "stdin")
        return
    path = Path(source)
    if path.is_dir():
        reason = check_dir(path) if check_dir else None
        if reason:
            raise CliError(reason)
        yield Upload(tar_directory(path, on_skip=_warn_skipped), None, estimate_tar_size(path), path.name)
        return
    if not path.exists():
        raise CliError(f"{source}: no such file or directory")
    with path.open("rb") as f:
        size = body_size(f)
        yield Upload(f, size, size, path.name)


def _warn_skipped(name: str, reason: str) -> None:
    print_error(f"skipping {name}: {reason}")


@contextlib.contextmanager
def progress_bar(upload: Upload) -> Iterator[Callable[[int], None]]:
    """A bar with bytes sent, the total and the speed; shown only when stderr is a terminal."""
    console = stderr_console()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal or bool(os.environ.get("ATOLL_NO_PROGRESS")),
    )
    with bar:
        task = bar.add_task(f"Uploading {upload.label}", total=upload.total)
        sent = 0

        def update(count: int) -> None:
            nonlocal sent
            sent = count
            bar.update(task, completed=count)

        yield update
        bar.update(task, total=sent, completed=sent, description=f"Uploaded {upload.label}")
