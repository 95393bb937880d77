"""The low-level SDK against ``httpx.MockTransport``: paths, parameters, bodies, errors and streams."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from atoll.client import AtollAPI, AtollConnectionError, AtollError, encode_frame
from atoll.client.uploads import CHUNK_SIZE
from atoll.schemas import ImageConfigWire, InstanceCreate, ResourcesWire, WaitResult
from tests.cli.factories import make_image, make_instance

Handler = Callable[[httpx.Request], httpx.Response]


class StreamingMockTransport(httpx.MockTransport):
    """``MockTransport`` reads the whole request body before calling the handler; this one leaves the body
    to the handler, so a test can watch an upload go out chunk by chunk."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.handler(request)
        assert isinstance(response, httpx.Response)
        return response


def client(handler: Handler, project: str = "default") -> AtollAPI:
    return AtollAPI("http://atoll.test:7780", project, transport=StreamingMockTransport(handler))


def json_response(model: object, status: int = 200) -> httpx.Response:
    if isinstance(model, list):
        return httpx.Response(status, json=[m.model_dump(mode="json") for m in model])
    return httpx.Response(status, json=model.model_dump(mode="json"))  # type: ignore[attr-defined]


def test_list_instances_sends_filters() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return json_response([make_instance()])

    out = client(handler, project="team-a").instances(all=True, labels=["a=1", "b"], names=["web"])
    assert out == [make_instance()]
    url = seen[0].url
    assert url.path == "/v1/projects/team-a/instances"
    assert url.params.get_list("label") == ["a=1", "b"]
    assert url.params["all"] == "true"
    assert url.params["name"] == "web"
    assert "status" not in url.params


def test_create_sends_only_what_was_set() -> None:
    bodies: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return json_response(make_instance(), 201)

    spec = InstanceCreate(
        image="alpine", command=["-la"], entrypoint=[], resources=ResourcesWire(memory=64 << 20)
    )
    client(handler).create_instance(spec)
    assert bodies == [
        {"image": "alpine", "command": ["-la"], "entrypoint": [], "resources": {"memory": 64 << 20}}
    ]


def test_image_refs_keep_slashes_and_colons() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return json_response(make_image())

    api = client(handler)
    api.inspect_image("registry:5000/team/app:v1")
    api.tag_image("sha256:abc", "app:v2")
    assert paths == [
        "/v1/projects/default/images/registry:5000/team/app:v1",
        "/v1/projects/default/images/sha256:abc/tag",
    ]


def test_actions_and_params() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, dict(request.url.params)))
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith("/wait"):
            return httpx.Response(200, json={"exit_code": 3})
        return json_response(make_instance())

    api = client(handler)
    api.stop_instance("web", timeout=2)
    api.kill_instance("web", signal="HUP")
    api.restart_instance("web")
    assert api.wait_instance("web") == WaitResult(exit_code=3)
    api.wait_instance("web", condition="next-exit")
    api.remove_instance("web", force=True)
    api.remove_instance("db")
    assert seen == [
        ("POST", "/v1/projects/default/instances/web/stop", {"timeout": "2"}),
        ("POST", "/v1/projects/default/instances/web/kill", {"signal": "HUP"}),
        ("POST", "/v1/projects/default/instances/web/restart", {}),
        ("POST", "/v1/projects/default/instances/web/wait", {}),
        ("POST", "/v1/projects/default/instances/web/wait", {"condition": "next-exit"}),
        ("DELETE", "/v1/projects/default/instances/web", {"force": "true"}),
        ("DELETE", "/v1/projects/default/instances/db", {}),
    ]


def test_blocking_calls_have_no_read_timeout() -> None:
    timeouts: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts[request.url.path.rsplit("/", 1)[-1]] = request.extensions["timeout"]["read"]
        if request.url.path.endswith("/wait"):
            return httpx.Response(200, json={"exit_code": 0})
        if request.url.path.endswith("/logs"):
            return httpx.Response(200, content=b"")
        return json_response(make_instance())

    api = client(handler)
    api.wait_instance("web")
    api.start_instance("web")
    list(api.logs("web", follow=True))
    assert timeouts == {"wait": None, "start": 60.0, "logs": None}


def test_error_body_becomes_atoll_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such instance: x"}})

    with pytest.raises(AtollError) as info:
        client(handler).inspect_instance("x")
    assert (info.value.code, info.value.message, info.value.status) == (
        "not_found",
        "no such instance: x",
        404,
    )
    assert str(info.value) == "no such instance: x"


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (422, {"detail": [{"loc": ["body", "name"], "msg": "bad pattern"}]}, "invalid", "name: bad pattern"),
        (404, {"detail": "Not Found"}, "not_found", "Not Found"),
        (502, b"upstream down", "http_502", "upstream down"),
        (503, b"", "http_503", "503 Service Unavailable"),
    ],
)
def test_foreign_error_bodies(status: int, body: object, code: str, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    with pytest.raises(AtollError) as info:
        client(handler).projects()
    assert (info.value.code, info.value.message, info.value.status) == (code, message, status)


def test_unreachable_api() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with pytest.raises(AtollConnectionError) as info:
        client(handler).hosts()
    assert "cannot reach the Atoll API at http://atoll.test:7780" in info.value.message
    assert "make up" in info.value.message
    assert isinstance(info.value, ConnectionError)


def test_unreachable_for_real() -> None:
    with AtollAPI("http://127.0.0.1:1", connect_timeout=2) as api, pytest.raises(AtollConnectionError):
        api.projects()


def test_unexpected_answer_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"what": "ever"})

    with pytest.raises(AtollError) as info:
        client(handler).inspect_instance("web")
    assert info.value.code == "protocol"


def chunked(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    pos = 0
    for size in sizes:
        yield data[pos : pos + size]
        pos += size
    yield data[pos:]


def test_logs_parses_frames_split_across_chunks() -> None:
    data = encode_frame(1, b"hello\n") + encode_frame(2, b"oops\n") + encode_frame(1, b"bye\n")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=chunked(data, [3, 7, 1, 9]))

    frames = list(client(handler).logs("web", follow=True, tail="all", timestamps=True, since="10m"))
    assert frames == [(1, b"hello\n"), (2, b"oops\n"), (1, b"bye\n")]
    assert dict(seen[0].url.params) == {"follow": "true", "timestamps": "true", "since": "10m"}


def test_logs_tail_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"")

    assert list(client(handler).logs("web", tail=5)) == []
    assert dict(seen[0].url.params) == {"tail": "5"}


def test_logs_errors_raise_at_call_time() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such instance: nope"}})

    with pytest.raises(AtollError, match="no such instance"):
        client(handler).logs("nope")


def test_logs_truncated_stream() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=encode_frame(1, b"abcdef")[:-3])

    with pytest.raises(AtollError, match="malformed log stream"):
        list(client(handler).logs("web"))


def test_logs_stream_yields_before_the_response_ends() -> None:
    """Frames come out as their bytes arrive: following a log must not wait for the end of the body."""
    produced: list[int] = []

    def body() -> Iterator[bytes]:
        for i in range(3):
            produced.append(i)
            yield encode_frame(1, f"line {i}\n".encode())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    stream = client(handler).logs("web", follow=True)
    assert next(stream) == (1, b"line 0\n")
    assert produced == [0]
    stream.close()


class CountingReader(io.RawIOBase):
    """A file whose reads are counted, so a test can see that the upload does not read ahead."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        n = self.remaining if size < 0 else min(size, self.remaining)
        self.remaining -= n
        return b"x" * n


def test_import_streams_without_buffering() -> None:
    size = 3 * CHUNK_SIZE + 123
    reader = CountingReader(size)
    progress: list[int] = []
    received: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == "application/x-tar"
        assert request.headers.get("transfer-encoding") == "chunked"
        assert isinstance(request.stream, httpx.SyncByteStream)
        for chunk in request.stream:
            received.append(len(chunk))
            # The body is read chunk by chunk while it is being sent, never ahead.
            assert reader.reads == len(received)
            assert len(chunk) <= CHUNK_SIZE
        return json_response([make_image()])

    images = client(handler).import_image(reader, progress.append)
    assert images == [make_image()]
    assert sum(received) == size
    assert progress == [CHUNK_SIZE, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE, size]


def test_import_of_a_real_file_has_a_content_length(tmp_path: Path) -> None:
    path = tmp_path / "image.tar"
    path.write_bytes(b"t" * 5000)
    lengths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        lengths.append(request.headers["content-length"])
        assert "transfer-encoding" not in request.headers
        assert b"".join(request.stream) == b"t" * 5000  # type: ignore[arg-type]
        return json_response([make_image()])

    with path.open("rb") as f:
        client(handler).import_image(f)
    assert lengths == ["5000"]


def test_build_from_an_iterator_sends_tag_and_config() -> None:
    produced: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(4):
            produced.append(i)
            yield bytes([i]) * 10

    seen: list[tuple[dict[str, str], list[int]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        counts = []
        for _ in request.stream:  # type: ignore[union-attr]
            counts.append(len(produced))
        seen.append((dict(request.url.params), counts))
        return json_response(make_image())

    config = ImageConfigWire(cmd=["/bin/sh"], env=["A=1"])
    client(handler).build_image(chunks(), tag="app:v1", config=config)
    params, counts = seen[0]
    assert counts == [1, 2, 3, 4]
    assert params["tag"] == "app:v1"
    assert ImageConfigWire.model_validate_json(params["config"]) == config


def test_remove_image() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["force"] == "true"
        return httpx.Response(200, json={"untagged": ["app:v1"], "deleted": ["sha256:1"]})

    removed = client(handler).remove_image("app:v1", force=True)
    assert removed.untagged == ["app:v1"]


def test_projects_and_hosts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/hosts":
            return httpx.Response(200, json=[])
        if request.method == "POST":
            assert json.loads(request.content) == {"name": "team-b"}
            return httpx.Response(201, json={"name": "team-b", "created_at": "2024-01-01T00:00:00Z"})
        return httpx.Response(200, json=[{"name": "default", "created_at": "2024-01-01T00:00:00Z"}])

    api = client(handler)
    assert [p.name for p in api.projects()] == ["default"]
    assert api.create_project("team-b").name == "team-b"
    assert api.hosts() == []


def test_from_env() -> None:
    api = AtollAPI.from_env({"ATOLL_URL": "http://10.0.0.1:9000/", "ATOLL_PROJECT": "p"})
    assert (api.base_url, api.project) == ("http://10.0.0.1:9000", "p")
    default = AtollAPI.from_env({})
    assert (default.base_url, default.project) == ("http://127.0.0.1:7780", "default")
