"""``atoll run``: option parsing into the create request, and the foreground/detached flows."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import MagicMock, call

import pytest

from atoll.client import AtollConnectionError, AtollError
from atoll.schemas import InstanceCreate, ResourcesWire, RestartPolicyWire, WaitResult
from tests.cli.conftest import FakeStream, Invoke
from tests.cli.factories import INSTANCE_ID, make_instance


@pytest.fixture
def ready(api: MagicMock) -> MagicMock:
    api.create_instance.return_value = make_instance()
    api.start_instance.return_value = make_instance(status="running")
    api.logs.return_value = FakeStream([(1, b"out\n"), (2, b"err\n")])
    api.wait_instance.return_value = WaitResult(exit_code=0)
    return api


def sent(api: MagicMock) -> InstanceCreate:
    spec = api.create_instance.call_args.args[0]
    assert isinstance(spec, InstanceCreate)
    return spec


def test_detached_prints_the_id(cli: Invoke, ready: MagicMock) -> None:
    result = cli("run", "-d", "alpine")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{INSTANCE_ID}\n"
    assert sent(ready).model_dump(exclude_unset=True) == {"image": "alpine"}
    ready.start_instance.assert_called_once_with(INSTANCE_ID)
    ready.logs.assert_not_called()


def test_command_passthrough_with_dashes(cli: Invoke, ready: MagicMock) -> None:
    result = cli("run", "-d", "--name", "web", "alpine", "ls", "-la", "--color", "-d", "--", "x")
    assert result.exit_code == 0, result.output
    spec = sent(ready)
    assert spec.name == "web"
    assert spec.command == ["ls", "-la", "--color", "-d", "--", "x"]


def test_first_argument_starting_with_dash_after_image(cli: Invoke, ready: MagicMock) -> None:
    assert cli("run", "-d", "nginx", "-g", "daemon off;").exit_code == 0
    assert sent(ready).command == ["-g", "daemon off;"]


def test_all_options(cli: Invoke, ready: MagicMock, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\nFROM_FILE=1\n")
    result = cli(
        "run", "-d",
        "--name", "db",
        "-e", "A=1", "--env", "HOME_COPY", "-e", "UNSET_HERE",
        "--env-file", str(env_file),
        "--entrypoint", "/bin/sh -c",
        "-w", "/srv",
        "-u", "1000:1000",
        "-h", "dbhost",
        "-l", "tier=db", "--label", "flag",
        "--read-only",
        "-t",
        "-m", "64m", "--memory-swap", "-1",
        "--cpus", "1.5", "--cpu-shares", "512", "--pids-limit", "100",
        "--restart", "on-failure:3",
        "--stop-signal", "SIGINT", "--stop-timeout", "30",
        "postgres:16", "postgres", "-c", "fsync=off",
        env={"HOME_COPY": "/home/me"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    spec = sent(ready)
    assert spec == InstanceCreate(
        image="postgres:16",
        name="db",
        command=["postgres", "-c", "fsync=off"],
        entrypoint=["/bin/sh -c"],
        env=["FROM_FILE=1", "A=1", "HOME_COPY=/home/me", "UNSET_HERE"],
        working_dir="/srv",
        user="1000:1000",
        hostname="dbhost",
        labels={"tier": "db", "flag": ""},
        readonly_rootfs=True,
        tty=True,
        resources=ResourcesWire(memory=64 << 20, memory_swap=-1, cpus=1.5, cpu_shares=512, pids_limit=100),
        restart_policy=RestartPolicyWire(name="on-failure", max_retries=3),
        stop_signal="SIGINT",
        stop_timeout=30,
    )


def test_entrypoint_reset(cli: Invoke, ready: MagicMock) -> None:
    assert cli("run", "-d", "--entrypoint", "", "alpine", "echo").exit_code == 0
    assert sent(ready).entrypoint == []
    assert sent(ready).command == ["echo"]


def test_no_entrypoint_option_leaves_the_image_s(cli: Invoke, ready: MagicMock) -> None:
    assert cli("run", "-d", "alpine").exit_code == 0
    assert sent(ready).entrypoint is None
    assert sent(ready).command is None


@pytest.mark.parametrize(
    ("text", "expected"), [("1g", 1 << 30), ("64M", 64 << 20), ("6144k", 6 << 20), ("7340032", 7340032)]
)
def test_memory_units(cli: Invoke, ready: MagicMock, text: str, expected: int) -> None:
    result = cli("run", "-d", "-m", text, "alpine")
    assert result.exit_code == 0, result.output
    assert sent(ready).resources.memory == expected


def test_memory_below_the_minimum_is_refused_before_any_request(cli: Invoke, ready: MagicMock) -> None:
    result = cli("run", "-d", "-m", "512k", "alpine")
    assert result.exit_code == 125
    assert result.stderr.startswith("Error: invalid memory: Input should be greater than or equal to")
    ready.create_instance.assert_not_called()


def test_bad_memory_unit_is_a_usage_error(cli: Invoke, ready: MagicMock) -> None:
    result = cli("run", "-m", "lots", "alpine")
    assert result.exit_code == 2
    assert "invalid size 'lots'" in result.stderr


@pytest.mark.parametrize(
    ("text", "name", "retries"),
    [("always", "always", 0), ("unless-stopped", "unless-stopped", 0), ("no", "no", 0)],
)
def test_restart_policies(cli: Invoke, ready: MagicMock, text: str, name: str, retries: int) -> None:
    assert cli("run", "-d", "--restart", text, "alpine").exit_code == 0
    assert sent(ready).restart_policy == RestartPolicyWire(name=name, max_retries=retries)


def test_bad_restart_policy(cli: Invoke, ready: MagicMock) -> None:
    result = cli("run", "--restart", "always:2", "alpine")
    assert result.exit_code == 2
    assert "maximum retry count" in result.stderr
    ready.create_instance.assert_not_called()


def test_restart_conflicts_with_rm(cli: Invoke, ready: MagicMock) -> None:
    result = cli("run", "--rm", "--restart", "always", "alpine")
    assert result.exit_code == 125
    assert "conflicting options" in result.stderr


def test_pids_limit_minus_one_means_unlimited(cli: Invoke, ready: MagicMock) -> None:
    assert cli("run", "-d", "--pids-limit", "-1", "alpine").exit_code == 0
    assert "resources" not in sent(ready).model_fields_set


def test_foreground_streams_and_exits_with_the_code(cli: Invoke, ready: MagicMock) -> None:
    ready.wait_instance.return_value = WaitResult(exit_code=3)
    result = cli("run", "alpine", "sh", "-c", "exit 3")
    assert result.exit_code == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    ready.logs.assert_called_once_with(INSTANCE_ID, follow=True)
    ready.wait_instance.assert_called_once_with(INSTANCE_ID)
    ready.remove_instance.assert_not_called()
    assert ready.logs.return_value.closed


def test_foreground_rm_removes_after_the_exit(cli: Invoke, ready: MagicMock) -> None:
    result = cli("run", "--rm", "alpine", "true")
    assert result.exit_code == 0
    # Removal is the client's job in the foreground, so the server must not race it to the exit code.
    assert sent(ready).auto_remove is False
    calls = [c for c in ready.method_calls if c != call.close()]
    assert calls[-2:] == [
        call.wait_instance(INSTANCE_ID),
        call.remove_instance(INSTANCE_ID, force=True, volumes=True),
    ]


def test_detached_rm_is_left_to_the_server(cli: Invoke, ready: MagicMock) -> None:
    assert cli("run", "-d", "--rm", "alpine").exit_code == 0
    assert sent(ready).auto_remove is True
    ready.remove_instance.assert_not_called()


def test_create_failure_exits_125(cli: Invoke, ready: MagicMock) -> None:
    ready.create_instance.side_effect = AtollError("not_found", "no such image: nope", 404)
    result = cli("run", "nope")
    assert result.exit_code == 125
    assert result.stderr == "Error: no such image: nope\n"


def test_start_failure_with_rm_removes_the_instance(cli: Invoke, ready: MagicMock) -> None:
    ready.start_instance.side_effect = AtollError("runtime", "exec format error", 500)
    result = cli("run", "--rm", "alpine")
    assert result.exit_code == 125
    assert "exec format error" in result.stderr
    ready.remove_instance.assert_called_once_with(INSTANCE_ID, force=True, volumes=True)


def test_unreachable_api(cli: Invoke, api: MagicMock) -> None:
    api.create_instance.side_effect = AtollConnectionError.unreachable("http://127.0.0.1:7780")
    result = cli("run", "alpine")
    assert result.exit_code == 125
    assert "cannot reach the Atoll API at http://127.0.0.1:7780" in result.stderr


def test_ctrl_c_detaches_with_a_hint(cli: Invoke, ready: MagicMock) -> None:
    class Interrupted(FakeStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield (1, b"partial\n")
            raise KeyboardInterrupt

    ready.logs.return_value = Interrupted([])
    result = cli("run", "--name", "web", "alpine")
    assert result.exit_code == 130
    assert result.stdout == "partial\n"
    assert "still running" in result.stderr
    assert "atoll stop web" in result.stderr
    ready.wait_instance.assert_not_called()
