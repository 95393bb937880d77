"""An exec session over the instance's exec WebSocket.

Protocol: the client opens with one text message (``ExecStart`` as JSON). The server then sends binary
frames (one byte of stream id, then data) and ends with one text message, ``{"exit_code": N}`` or
``{"error": {...}}``, before it closes. The client may send binary frames (stdin), ``{"resize": [rows,
cols]}`` and ``{"eof": true}``.

Reading and writing may happen on two threads (one reading output, one forwarding stdin); the
underlying connection allows one reader and one writer at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from atoll.client.errors import AtollConnectionError, AtollError


class ExecSession:
    def __init__(self, conn: ClientConnection, url: str = "") -> None:
        self._conn = conn
        self._url = url
        self._exit_code: int | None = None

    @property
    def exit_code(self) -> int | None:
        """The command's exit code, once the server has sent it (after the output is exhausted)."""
        return self._exit_code

    def send_stdin(self, data: bytes) -> None:
        if data:
            self._send(bytes(data))

    def close_stdin(self) -> None:
        self._send(json.dumps({"eof": True}))

    def resize(self, rows: int, cols: int) -> None:
        self._send(json.dumps({"resize": [rows, cols]}))

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return self.output()

    def output(self) -> Iterator[tuple[int, bytes]]:
        """Yield (stream id, data) until the command ends; then ``exit_code`` is set."""
        while self._exit_code is None:
            try:
                message = self._conn.recv()
            except ConnectionClosed as exc:
                raise AtollConnectionError(
                    f"the exec session ended before the command's exit code arrived ({exc})", self._url
                ) from exc
            if isinstance(message, str):
                self._control(message)
            elif len(message) > 1:
                yield message[0], bytes(message[1:])

    def wait(self) -> int:
        """Discard the remaining output and return the exit code."""
        for _ in self.output():
            pass
        assert self._exit_code is not None
        return self._exit_code

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ExecSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, message: str | bytes) -> None:
        try:
            self._conn.send(message)
        except ConnectionClosed as exc:
            raise AtollConnectionError(f"the exec session is closed ({exc})", self._url) from exc

    def _control(self, message: str) -> None:
        try:
            data: Any = json.loads(message)
        except ValueError as exc:
            raise AtollError("protocol", f"unexpected text message on the exec stream: {message!r}") from exc
        if not isinstance(data, dict):
            raise AtollError("protocol", f"unexpected text message on the exec stream: {message!r}")
        if "error" in data:
            err = data["error"] if isinstance(data["error"], dict) else {"message": str(data["error"])}
            raise AtollError(str(err.get("code", "exec")), str(err.get("message", err)))
        if "exit_code" in data:
            self._exit_code = int(data["exit_code"])
