"""Fixtures for the SDK and CLI tests: no server, no kernel; the SDK is mocked at its own boundary."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from unittest.mock import MagicMock

import pytest


def _stub_node_if_missing() -> None:
    """``atoll.cli.up`` imports ``atoll.node`` (the lead's module). Until it exists, stand in for it so the
    CLI can be imported; these tests never run ``atoll up`` for real."""
    try:
        found = importlib.util.find_spec("atoll.node") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        stub = types.ModuleType("atoll.node")

        def run_up(settings: object) -> None:
            raise RuntimeError("atoll.node is not written yet")

        stub.run_up = run_up  # type: ignore[attr-defined]
        sys.modules["atoll.node"] = stub


_stub_node_if_missing()

from typer.testing import CliRunner, Result  # noqa: E402

from atoll.cli.main import app  # noqa: E402
from atoll.client import AtollAPI  # noqa: E402

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
