"""``AtollAPI.exec`` against a small real WebSocket server that speaks the exec protocol."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from atoll.client import AtollAPI, AtollConnectionError, AtollError
from atoll.schemas import ExecStart

Behaviour = Callable[[ServerConnection, ExecStart], None]


def echo_until_eof(ws: ServerConnection, start: ExecStart) -> None:
    """Say hello on stdout and stderr, echo stdin on stdout, record resizes, exit 7 at end of input."""
    ws.send(b"\x01hello " + " ".join(start.args).encode())
    ws.send(b"\x02warning")
    while True:
        message = ws.recv()
        if isinstance(message, bytes):
            ws.send(b"\x01" + message)
            continue
        control = json.loads(message)
        if "resize" in control:
            ws.send(b"\x02resized %d %d" % tuple(control["resize"]))
        if control.get("eof"):
            ws.send(json.dumps({"exit_code": 7}))
            ws.close()
            return


@pytest.fixture
def exec_server() -> Iterator[tuple[str, list[str], list[ExecStart], Callable[[Behaviour], None]]]:
    """A server on loopback; yields (base URL, request paths, start messages, set_behaviour)."""
    paths: list[str] = []
    starts: list[ExecStart] = []
    behaviour: list[Behaviour] = [echo_until_eof]

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        paths.append(request.path)
        if "/instances/missing/" in request.path:
            body = json.dumps({"error": {"code": "not_found", "message": "no such instance: missing"}})
            return Response(404, "Not Found", Headers({"Content-Type": "application/json"}), body.encode())
        return None

    def handler(ws: ServerConnection) -> None:
        first = ws.recv()
        assert isinstance(first, str)
        start = ExecStart.model_validate_json(first)
        starts.append(start)
        behaviour[0](ws, start)

    server: Server = serve(handler, "127.0.0.1", 0, process_request=process_request)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.socket.getsockname()[:2]
    try:
        yield f"http://{host}:{port}", paths, starts, lambda b: behaviour.__setitem__(0, b)
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_exec_round_trip(
    exec_server: tuple[str, list[str], list[ExecStart], Callable[[Behaviour], None]],
) -> None:
    url, paths, starts, _ = exec_server
    spec = ExecStart(args=["cat", "-n"], env=["A=1"], tty=True, stdin=True)
    with AtollAPI(url, "team") as api, api.exec("web", spec) as session:
        output = session.output()
        assert next(output) == (1, b"hello cat -n")
        assert next(output) == (2, b"warning")
        session.send_stdin(b"ping")
        assert next(output) == (1, b"ping")
        session.resize(24, 80)
        assert next(output) == (2, b"resized 24 80")
        session.close_stdin()
        assert list(output) == []
        assert session.exit_code == 7
    assert paths == ["/v1/projects/team/instances/web/exec"]
    assert starts == [spec]


def test_exec_wait_discards_output(
    exec_server: tuple[str, list[str], list[ExecStart], Callable[[Behaviour], None]],
) -> None:
    url, _, _, _ = exec_server
    with AtollAPI(url) as api, api.exec("web", ExecStart(args=["true"], stdin=True)) as session:
        session.close_stdin()
        assert session.wait() == 7


def test_exec_refused_at_handshake(
    exec_server: tuple[str, list[str], list[ExecStart], Callable[[Behaviour], None]],
) -> None:
    url, _, _, _ = exec_server
    with AtollAPI(url) as api, pytest.raises(AtollError) as info:
        api.exec("missing", ExecStart(args=["sh"]))
    assert (info.value.code, info.value.status) == ("not_found", 404)
    assert info.value.message == "no such instance: missing"


def test_exec_error_message_from_server(
    exec_server: tuple[str, list[str], list[ExecStart], Callable[[Behaviour], None]],
) -> None:
    url, _, _, set_behaviour = exec_server

    def refuse(ws: ServerConnection, start: ExecStart) -> None:
        ws.send(json.dumps({"error": {"code": "conflict", "message": "instance web is not running"}}))
        ws.close()

    set_behaviour(refuse)
    with (
        AtollAPI(url) as api,
        api.exec("web", ExecStart(args=["sh"])) as session,
        pytest.raises(AtollError) as info,
    ):
        list(session)
    assert (info.value.code, info.value.message) == ("conflict", "instance web is not running")


def test_exec_connection_lost_before_exit_code(
    exec_server: tuple[str, list[str], list[ExecStart], Callable[[Behaviour], None]],
) -> None:
    url, _, _, set_behaviour = exec_server

    def hang_up(ws: ServerConnection, start: ExecStart) -> None:
        ws.send(b"\x01partial")
        ws.close()

    set_behaviour(hang_up)
    with AtollAPI(url) as api, api.exec("web", ExecStart(args=["sh"])) as session:
        output = session.output()
        assert next(output) == (1, b"partial")
        with pytest.raises(AtollConnectionError, match="before the command's exit code"):
            next(output)
        assert session.exit_code is None


def test_exec_unreachable() -> None:
    with AtollAPI("http://127.0.0.1:1") as api, pytest.raises(AtollConnectionError, match="make up"):
        api.exec("web", ExecStart(args=["sh"]))
