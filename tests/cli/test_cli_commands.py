"""The other commands against a mocked SDK: what they ask for, what they print, how they fail."""

from __future__ import annotations

import importlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import MagicMock, call

import pytest

from atoll.cli import up
from atoll.client import AtollError
from atoll.host_schemas import HostDetail, Resources
from atoll.schemas import ExecStart, Host, Project, WaitResult
from tests.cli.conftest import FakeStream, Invoke
from tests.cli.factories import INSTANCE_ID, make_instance


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).isoformat().replace("+00:00", "Z")


def test_global_options_reach_the_factory(
    cli: Invoke, api: MagicMock, factory_calls: list[tuple[str, str]]
) -> None:
    api.instances.return_value = []
    assert cli("--url", "http://10.1.1.1:9000", "--project", "team", "ps").exit_code == 0
    assert cli("ps", env={"ATOLL_URL": "http://h:1", "ATOLL_PROJECT": "p2"}).exit_code == 0
    assert factory_calls == [("http://10.1.1.1:9000", "team"), ("http://h:1", "p2")]
    api.close.assert_called()


def test_ps_table(cli: Invoke, api: MagicMock) -> None:
    api.instances.return_value = [
        make_instance(
            name="web",
            status="running",
            created_at=iso(timedelta(minutes=5)),
            started_at=iso(timedelta(minutes=3, seconds=5)),
        ),
        make_instance(
            id="f" * 64,
            name="job",
            status="exited",
            exit_code=3,
            created_at=iso(timedelta(hours=2)),
            finished_at=iso(timedelta(seconds=2, milliseconds=500)),
        ),
    ]
    result = cli("ps", "-a")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "IMAGE", "COMMAND", "STATUS", "CREATED"]
    assert lines[1].startswith(INSTANCE_ID[:12] + " ")
    assert INSTANCE_ID[:13] not in lines[1]
    assert "\"sh -c 'echo hello'\"" in lines[1]
    assert "Up 3 minutes" in lines[1] and "5 minutes ago" in lines[1]
    # the table is rendered a moment after the fixture's "now": a loaded machine may add a second or more
    assert re.search(r"Exited \(3\) [2-9] seconds ago", lines[2]) and "2 hours ago" in lines[2]
    api.instances.assert_called_once_with(all=True, labels=None, names=None, statuses=None)


def test_ps_quiet_and_filters(cli: Invoke, api: MagicMock) -> None:
    api.instances.return_value = [make_instance()]
    result = cli("ps", "-q", "--filter", "label=tier=db", "-f", "status=exited", "--filter", "name=w")
    assert result.exit_code == 0
    assert result.stdout == INSTANCE_ID[:12] + "\n"
    api.instances.assert_called_once_with(all=False, labels=["tier=db"], names=["w"], statuses=["exited"])


def test_ps_bad_filter(cli: Invoke, api: MagicMock) -> None:
    result = cli("ps", "--filter", "ancestor=alpine")
    assert result.exit_code == 2
    assert "invalid filter" in result.stderr


def test_logs_split_streams(cli: Invoke, api: MagicMock) -> None:
    api.logs.return_value = FakeStream([(1, b"a\n"), (2, b"b\n"), (1, b"\xff\xfe raw\n")])
    result = cli("logs", "-f", "--tail", "10", "-t", "--since", "1h", "web")
    assert result.exit_code == 0
    assert result.stdout_bytes == b"a\n\xff\xfe raw\n"
    assert result.stderr == "b\n"
    api.logs.assert_called_once_with("web", follow=True, tail="10", timestamps=True, since="1h")


def test_logs_bad_tail(cli: Invoke, api: MagicMock) -> None:
    assert cli("logs", "--tail", "ten", "web").exit_code == 2
    api.logs.assert_not_called()


def test_logs_of_a_missing_instance(cli: Invoke, api: MagicMock) -> None:
    api.logs.side_effect = AtollError("not_found", "no such instance: nope", 404)
    result = cli("logs", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: no such instance: nope\n"


def test_lifecycle_commands(cli: Invoke, api: MagicMock) -> None:
    assert cli("start", "a", "b").stdout == "a\nb\n"
    assert cli("stop", "-t", "3", "a").stdout == "a\n"
    assert cli("restart", "--time", "1", "a").exit_code == 0
    assert cli("kill", "-s", "HUP", "a").exit_code == 0
    assert cli("rm", "-f", "a", "b").stdout == "a\nb\n"
    calls = [c for c in api.method_calls if c != call.close()]
    assert calls == [
        call.start_instance("a"),
        call.start_instance("b"),
        call.stop_instance("a", timeout=3.0),
        call.restart_instance("a", timeout=1.0),
        call.kill_instance("a", signal="HUP"),
        call.remove_instance("a", force=True),
        call.remove_instance("b", force=True),
    ]


def test_partial_failure_goes_on_and_exits_1(cli: Invoke, api: MagicMock) -> None:
    def remove(ref: str, force: bool) -> None:
        if ref == "bad":
            raise AtollError("conflict", "instance bad is running: stop it first or use force", 409)

    api.remove_instance.side_effect = remove
    result = cli("rm", "bad", "good")
    assert result.exit_code == 1
    assert result.stdout == "good\n"
    assert result.stderr == "Error: instance bad is running: stop it first or use force\n"


def test_inspect_prints_json(cli: Invoke, api: MagicMock) -> None:
    def inspect(ref: str) -> object:
        if ref == "nope":
            raise AtollError("not_found", "no such instance: nope", 404)
        return make_instance(name=ref)

    api.inspect_instance.side_effect = inspect
    result = cli("inspect", "web", "nope")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [d["name"] for d in data] == ["web"]
    assert data[0]["process"]["args"] == ["sh", "-c", "echo hello"]
    assert "no such instance: nope" in result.stderr


def test_wait_prints_exit_codes(cli: Invoke, api: MagicMock) -> None:
    api.wait_instance.side_effect = [WaitResult(exit_code=0), WaitResult(exit_code=137, oom_killed=True)]
    result = cli("wait", "a", "b")
    assert result.exit_code == 0
    assert result.stdout == "0\n137\n"


def test_exec_streams_stdin_and_exits_with_the_code(cli: Invoke, api: MagicMock) -> None:
    session = FakeStream([(1, b"out"), (2, b"err")], exit_code=42)
    api.exec.return_value = session
    result = cli(
        "exec", "-i", "-e", "A=1", "-u", "nobody", "-w", "/tmp", "web", "sh", "-c", "cat", input=b"data"
    )
    assert result.exit_code == 42
    assert result.stdout == "out"
    assert result.stderr == "err"
    api.exec.assert_called_once_with(
        "web", ExecStart(args=["sh", "-c", "cat"], env=["A=1"], cwd="/tmp", user="nobody", stdin=True)
    )
    assert session.closed


def test_exec_pumps_stdin_until_eof() -> None:
    import io

    from atoll.cli.execute import pump_stdin

    session = FakeStream([])
    pump_stdin(io.BytesIO(b"x" * 100_000).read1, session)  # type: ignore[arg-type]
    assert bytes(session.stdin) == b"x" * 100_000
    assert session.stdin_closed


def test_exec_tty_needs_a_terminal(cli: Invoke, api: MagicMock) -> None:
    result = cli("exec", "-it", "web", "sh")
    assert result.exit_code == 1
    assert result.stderr == "Error: the input device is not a TTY\n"
    api.exec.assert_not_called()


def test_exec_args_starting_with_dashes(cli: Invoke, api: MagicMock) -> None:
    api.exec.return_value = FakeStream([], exit_code=0)
    assert cli("exec", "web", "ls", "-la", "-i").exit_code == 0
    assert api.exec.call_args.args[1].args == ["ls", "-la", "-i"]
    assert api.exec.call_args.args[1].stdin is False


def test_projects_and_hosts(cli: Invoke, api: MagicMock) -> None:
    api.projects.return_value = [Project(name="default", created_at="2024-01-01T00:00:00Z")]
    api.create_project.return_value = Project(name="team", created_at="2024-01-01T00:00:00Z")
    api.hosts.return_value = [
        Host(
            id="h" * 32,
            name="node1",
            state="ready",
            runtime="crun",
            cgroup_version=2,
            last_seen=iso(timedelta()),
        )
    ]
    ls = cli("project", "ls")
    assert ls.stdout.splitlines()[0].split() == ["NAME", "CREATED"]
    assert "default" in ls.stdout
    assert cli("project", "ls", "-q").stdout == "default\n"
    assert cli("project", "create", "team").stdout == "team\n"
    api.cluster_hosts.return_value = [
        HostDetail(
            id="h" * 32,
            name="node1",
            state="ready",
            drained=False,
            address="",
            runtime="crun",
            cgroup_version=2,
            capacity=None,
            allocated=Resources(),
            used=None,
            instances=0,
            heartbeat_age=None,
            last_seen=iso(timedelta()),
        )
    ]
    hosts = cli("host", "ls")
    assert hosts.exit_code == 0
    assert hosts.stdout.splitlines()[1].split()[:5] == ["h" * 12, "node1", "ready", "crun", "v2"]


def test_up_builds_settings_from_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATOLL_API_PORT", "9999")
    settings = up.settings_for(tmp_path, None, "0.0.0.0")
    assert (settings.data_dir, settings.api_port, settings.api_host) == (tmp_path, 9999, "0.0.0.0")
    assert up.settings_for(None, 1234, None).api_port == 1234


def test_up_calls_the_node(cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[object] = []
    monkeypatch.setattr(importlib.import_module("atoll.node"), "run_up", seen.append)
    result = cli("up", "--data-dir", str(tmp_path), "--port", "7781")
    assert result.exit_code == 0, result.output
    assert [(s.data_dir, s.api_port) for s in seen] == [(tmp_path, 7781)]  # type: ignore[attr-defined]
