from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from atoll.api.app import create_app
from atoll.services.context import Controller

from .factories import P
from .fakes import FakeAgent, image_archive, image_record


@pytest.fixture
def tc(ctl: Controller) -> Iterator[TestClient]:
    with TestClient(create_app(ctl)) as c:
        assert c.post(f"{P}/images/import", content=image_archive(image_record(1))).status_code == 200
        assert c.post(f"{P}/instances", json={"image": "busybox", "name": "web"}).status_code == 201
        assert c.post(f"{P}/instances/web/start").status_code == 200
        yield c


def test_exec_output_and_exit_code(tc: TestClient, agent: FakeAgent) -> None:
    with tc.websocket_connect(f"{P}/instances/web/exec") as ws:
        ws.send_text(json.dumps({"args": ["echo", "hi", "there"], "env": ["A=1"], "tty": True}))
        assert ws.receive_bytes() == b"\x01hi there\n"
        assert json.loads(ws.receive_text()) == {"exit_code": 0}
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()
    [(_, spec)] = agent.called("exec")
    assert (spec.args, spec.env, spec.tty) == (["echo", "hi", "there"], ["A=1"], True)


def test_exec_stderr(tc: TestClient) -> None:
    with tc.websocket_connect(f"{P}/instances/web/exec") as ws:
        ws.send_text(json.dumps({"args": ["fail"]}))
        assert ws.receive_bytes() == b"\x02oops\n"
        assert json.loads(ws.receive_text()) == {"exit_code": 2}


def test_exec_stdin_resize_eof(tc: TestClient, agent: FakeAgent) -> None:
    with tc.websocket_connect(f"{P}/instances/web/exec") as ws:
        ws.send_text(json.dumps({"args": ["cat"], "stdin": True}))
        ws.send_bytes(b"ping")
        assert ws.receive_bytes() == b"\x01ping"
        ws.send_text(json.dumps({"resize": [24, 80]}))
        ws.send_text(json.dumps({"eof": True}))
        assert json.loads(ws.receive_text()) == {"exit_code": 0}
    assert agent.execs[-1].resizes == [(24, 80)]


def test_exec_bad_control_message_kills(tc: TestClient, agent: FakeAgent) -> None:
    with tc.websocket_connect(f"{P}/instances/web/exec") as ws:
        ws.send_text(json.dumps({"args": ["cat"], "stdin": True}))
        ws.send_text(json.dumps({"resize": ["tall"]}))
        err = json.loads(ws.receive_text())
        assert err["error"]["code"] == "invalid" and err["error"]["message"].startswith("resize:")
    assert agent.execs[-1].killed


@pytest.mark.parametrize(
    ("path", "first", "code", "close"),
    [
        (f"{P}/instances/nope/exec", {"args": ["echo"]}, "not_found", 4404),
        (f"{P}/instances/web/exec", {"args": []}, "invalid", 4400),
        (f"{P}/instances/web/exec", {"args": ["echo"], "bogus": 1}, "invalid", 4400),
    ],
)
def test_exec_errors(tc: TestClient, path: str, first: dict[str, object], code: str, close: int) -> None:
    with tc.websocket_connect(path) as ws:
        ws.send_text(json.dumps(first))
        err = json.loads(ws.receive_text())
        assert set(err) == {"error"} and err["error"]["code"] == code
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_text()
        assert exc.value.code == close


def test_exec_output_failure(tc: TestClient, agent: FakeAgent) -> None:
    with tc.websocket_connect(f"{P}/instances/web/exec") as ws:
        ws.send_text(json.dumps({"args": ["boom"]}))
        err = json.loads(ws.receive_text())
        assert err["error"] == {"code": "runtime", "message": "the runtime lost the process"}
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_text()
        assert exc.value.code == 4500
    assert agent.execs[-1].killed


def test_exec_needs_a_running_instance(tc: TestClient) -> None:
    assert tc.post(f"{P}/instances/web/stop").status_code == 200
    with tc.websocket_connect(f"{P}/instances/web/exec") as ws:
        ws.send_text(json.dumps({"args": ["echo"]}))
        err = json.loads(ws.receive_text())
        assert err["error"] == {"code": "conflict", "message": "instance web is not running"}


def test_exec_first_message_must_be_text(tc: TestClient) -> None:
    with tc.websocket_connect(f"{P}/instances/web/exec") as ws:
        ws.send_bytes(b"\x00")
        assert json.loads(ws.receive_text())["error"]["code"] == "invalid"
