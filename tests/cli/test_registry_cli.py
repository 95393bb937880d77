"""The registry parts of the SDK (against httpx.MockTransport) and of the CLI (against a mocked SDK)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from unittest.mock import MagicMock

import httpx
import pytest

from atoll.client import AtollAPI, AtollError
from atoll.schemas import Image, ImageConfigWire, ImagesPruned, RegistryLoginView, TransferProgress

from .conftest import Invoke

IMAGE = Image(
    id="sha256:" + "a" * 64,
    repo_tags=["reg.example/app:1"],
    size=1,
    created="",
    architecture="amd64",
    os="linux",
    layers=[],
    config=ImageConfigWire(),
)


def sdk(handler: httpx.MockTransport) -> AtollAPI:
    return AtollAPI("http://atoll.test:7780", transport=handler)


def ndjson(*lines: Mapping[str, object]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def test_pull_reads_progress_and_returns_the_image() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = ndjson(
            {"status": "Downloading", "id": "abc", "current": 1, "total": 2},
            {
                "status": "Downloaded reg.example/app:1",
                "image": IMAGE.model_dump(mode="json"),
                "digest": "sha256:x",
            },
        )
        return httpx.Response(200, content=body, headers={"Content-Type": "application/x-ndjson"})

    events: list[TransferProgress] = []
    with sdk(httpx.MockTransport(handler)) as api:
        assert api.pull_image("reg.example/app:1", events.append) == IMAGE
    assert seen[0].url.path == "/v1/projects/default/images/pull"
    assert json.loads(seen[0].content) == {"reference": "reg.example/app:1"}
    assert [e.status for e in events] == ["Downloading", "Downloaded reg.example/app:1"]


def test_an_error_line_or_answer_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/push"):
            line = {"status": "error", "error": {"code": "bad_image", "message": "digest mismatch"}}
            return httpx.Response(200, content=ndjson({"status": "Pushing", "id": "a"}, line))
        return httpx.Response(403, json={"error": {"code": "registry_auth", "message": "refused"}})

    with sdk(httpx.MockTransport(handler)) as api:
        with pytest.raises(AtollError, match="digest mismatch") as err:
            api.push_image("reg.example/app:1")
        assert err.value.code == "bad_image"
        with pytest.raises(AtollError, match="refused") as err:
            api.pull_image("reg.example/app:1")
        assert err.value.status == 403


def test_logins_and_prune_paths() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/prune"):
            return httpx.Response(200, json={"deleted": ["sha256:1"], "untagged": [], "reclaimed": 5})
        if request.method == "DELETE":
            return httpx.Response(204)
        view = {"registry": "h:5000", "username": "alice", "created_at": "t"}
        return httpx.Response(
            201 if request.method == "POST" else 200, json=view if request.method == "POST" else [view]
        )

    with sdk(httpx.MockTransport(handler)) as api:
        assert api.login("h:5000", "alice", "pw").username == "alice"
        assert [v.registry for v in api.registry_logins()] == ["h:5000"]
        api.logout("h:5000")
        assert api.prune_images(all=True).reclaimed == 5
    paths = [(r.method, r.url.path, r.url.query.decode()) for r in seen]
    assert paths == [
        ("POST", "/v1/projects/default/registry-logins", ""),
        ("GET", "/v1/projects/default/registry-logins", ""),
        ("DELETE", "/v1/projects/default/registry-logins/h:5000", ""),
        ("POST", "/v1/projects/default/images/prune", "all=true"),
    ]


def test_cli_pull_push_prune_login(cli: Invoke, api: MagicMock) -> None:
    def pull(ref: str, show: object) -> Image:
        assert callable(show)
        show(TransferProgress(status="Pull complete", id="abc"))
        return IMAGE

    api.pull_image.side_effect = pull
    result = cli("image", "pull", "reg.example/app:1")
    assert result.exit_code == 0, result.output
    assert IMAGE.id in result.stdout and "abc: Pull complete" in result.output

    api.push_image.return_value = "sha256:feed"
    assert "sha256:feed" in cli("image", "push", "reg.example/app:1").stdout

    api.prune_images.return_value = ImagesPruned(deleted=["sha256:1"], reclaimed=2048)
    result = cli("image", "prune", "-a", "-f")
    assert "deleted: sha256:1" in result.stdout and "Total reclaimed space: 2" in result.stdout
    api.prune_images.assert_called_with(all=True)

    api.login.return_value = RegistryLoginView(registry="h:5000", username="alice", created_at="t")
    result = cli("login", "h:5000", "-u", "alice", "--password-stdin", input="pw\n")
    assert result.exit_code == 0 and "Login Succeeded" in result.stdout
    api.login.assert_called_with("h:5000", "alice", "pw")
    assert cli("logout", "h:5000").exit_code == 0
    api.logout.assert_called_with("h:5000")
