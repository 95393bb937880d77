"""Fixtures for the SDK and CLI tests: no server, no kernel; the SDK is mocked at its own boundary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from unittest.mock import MagicMock

import pytest
from typer.testing import CliRunner, Result

from atoll.cli.main import app
from atoll.client import AtollAPI

Invoke = Callable[..., Result]


@pytest.fixture
def api() -> MagicMock:
    return MagicMock(spec=AtollAPI)


@pytest.fixture
def factory_calls() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def cli(api: MagicMock, factory_calls: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run ``atoll ARGS...`` against the mocked SDK; the factory records the URL and project it was given."""
    monkeypatch.delenv("ATOLL_URL", raising=False)
    monkeypatch.delenv("ATOLL_PROJECT", raising=False)
    runner = CliRunner()

    def factory(url: str, project: str) -> MagicMock:
        factory_calls.append((url, project))
        return api

    def invoke(*args: str, input: bytes | str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, env=env, obj=factory)

    return invoke


class FakeStream:
    """Stands in for ``LogStream`` and ``ExecSession``: iterable frames, a context manager."""

    def __init__(self, frames: list[tuple[int, bytes]], exit_code: int | None = None) -> None:
        self.frames = frames
        self.exit_code = exit_code
        self.closed = False
        self.stdin = bytearray()
        self.stdin_closed = False
        self.resizes: list[tuple[int, int]] = []

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return iter(self.frames)

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def send_stdin(self, data: bytes) -> None:
        self.stdin += data

    def close_stdin(self) -> None:
        self.stdin_closed = True

    def resize(self, rows: int, cols: int) -> None:
        self.resizes.append((rows, cols))
