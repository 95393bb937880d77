from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from atoll.cli.humanize import human_size, instance_status, short_id, split_tag
from atoll.cli.parsing import parse_argv, parse_env, parse_filters, parse_labels, parse_memory, parse_restart
from atoll.model.clock import human_duration
from tests.cli.factories import make_instance

NOW = datetime(2024, 1, 1, 0, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("100b", 100),
        ("512k", 512 * 1024),
        ("512kb", 512 * 1024),
        ("64m", 64 << 20),
        ("64M", 64 << 20),
        ("64MiB", 64 << 20),
        ("1g", 1 << 30),
        ("1.5g", 3 << 29),
        ("2GB", 2 << 30),
        ("1t", 1 << 40),
    ],
)
def test_memory_units(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "10x", "1g1", "m"])
def test_bad_memory(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_memory(text)


def test_unlimited_swap() -> None:
    assert parse_memory("-1", allow_unlimited=True) == -1


@pytest.mark.parametrize(
    ("text", "name", "retries"),
    [
        ("no", "no", 0),
        ("always", "always", 0),
        ("unless-stopped", "unless-stopped", 0),
        ("on-failure", "on-failure", 0),
        ("on-failure:5", "on-failure", 5),
    ],
)
def test_restart(text: str, name: str, retries: int) -> None:
    policy = parse_restart(text)
    assert (policy.name, policy.max_retries) == (name, retries)


@pytest.mark.parametrize("text", ["sometimes", "always:3", "on-failure:x", "on-failure:-1", ""])
def test_bad_restart(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_restart(text)


def test_env_copies_local_values_and_passes_unset_keys() -> None:
    local = {"HOME": "/root", "EMPTY": ""}
    assert parse_env(["A=1", "HOME", "EMPTY", "MISSING", "B=x=y"], local) == [
        "A=1",
        "HOME=/root",
        "EMPTY=",
        "MISSING",
        "B=x=y",
    ]
    with pytest.raises(typer.BadParameter):
        parse_env(["=oops"], local)


def test_labels() -> None:
    assert parse_labels(["a=1", "b", "c=x=y"]) == {"a": "1", "b": "", "c": "x=y"}


def test_filters() -> None:
    assert parse_filters(["label=a=1", "label=b", "name=web", "status=exited"]) == {
        "label": ["a=1", "b"],
        "name": ["web"],
        "status": ["exited"],
    }
    with pytest.raises(typer.BadParameter, match="invalid filter"):
        parse_filters(["ancestor=alpine"])
    with pytest.raises(typer.BadParameter, match="bad format"):
        parse_filters(["label"])


def test_argv_forms() -> None:
    assert parse_argv('["/bin/sh", "-c", "echo hi"]') == ["/bin/sh", "-c", "echo hi"]
    assert parse_argv("nginx -g 'daemon off;'") == ["nginx", "-g", "daemon off;"]
    assert parse_argv("") == []
    with pytest.raises(typer.BadParameter):
        parse_argv("[1, 2]")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (150, "2 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (512, "512B"), (7_800_000, "7.8MB"), (133_000_000, "133MB"), (1.5e9, "1.5GB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_status_column() -> None:
    assert instance_status(make_instance(status="created"), NOW) == "Created"
    running = make_instance(status="running", started_at="2024-01-01T00:07:00Z")
    assert instance_status(running, NOW) == "Up 3 minutes"
    exited = make_instance(status="exited", exit_code=3, finished_at="2024-01-01T00:09:58.5Z")
    assert instance_status(exited, NOW) == "Exited (3) 1 second ago"
    assert instance_status(make_instance(status="dead"), NOW) == "Dead"


def test_ids_and_tags() -> None:
    assert short_id("sha256:" + "ab" * 32) == "abababababab"
    assert split_tag("alpine:3.19") == ("alpine", "3.19")
    assert split_tag("localhost:5000/team/app:v1") == ("localhost:5000/team/app", "v1")
    assert split_tag("localhost:5000/team/app") == ("localhost:5000/team/app", "<none>")
