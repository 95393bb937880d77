"""The per-layer progress display of ``image pull`` and ``image push``.

On a terminal, a Rich progress display with one row per layer (its short digest, its status, a bar
while bytes move). Elsewhere (a pipe, a log file, ``ATOLL_NO_PROGRESS``), one line per status change,
as ``docker pull`` prints them: ``<id>: Pull complete``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from atoll.cli.output import stderr_console
from atoll.client.transfers import ProgressHandler
from atoll.schemas import TransferProgress


class LayerDisplay:
    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._last: dict[str, str] = {}

    def __call__(self, event: TransferProgress) -> None:
        if event.image is not None or event.digest is not None or not event.id:
            self._line(event.status)
            return
        if self._progress is None:
            if self._last.get(event.id) != event.status:
                self._last[event.id] = event.status
                typer.echo(f"{event.id}: {event.status}", err=True)
            return
        task = self._tasks.get(event.id)
        description = f"{event.id}: {event.status}"
        if task is None:
            task = self._progress.add_task(description, total=event.total, start=True)
            self._tasks[event.id] = task
        done = event.status in ("Pull complete", "Already exists", "Layer already exists", "Pushed")
        done = done or event.status.startswith("Mounted from")
        self._progress.update(
            task,
            description=description,
            completed=event.total if done and event.total else (event.current or 0),
            total=event.total,
        )

    def _line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False)
        else:
            typer.echo(text, err=True)


@contextlib.contextmanager
def layer_display() -> Iterator[ProgressHandler]:
    console = stderr_console()
    if not console.is_terminal or os.environ.get("ATOLL_NO_PROGRESS"):
        yield LayerDisplay(None)
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    )
    with progress:
        yield LayerDisplay(progress)
