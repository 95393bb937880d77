from __future__ import annotations

import pytest

from atoll.model.errors import InvalidInput
from atoll.services.refs import full_id, id_prefix, normalize_tag
from atoll.services.signals import canonical_signal

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox", "busybox:latest"),
        ("library/busybox:x", "busybox:x"),
        ("docker.io/foo/bar", "foo/bar:latest"),
        ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("my.reg:443/a/b/c:t_1", "my.reg:443/a/b/c:t_1"),
    ],
)
def test_normalize(given: str, normal: str) -> None:
    assert normalize_tag(given) == normal


@pytest.mark.parametrize("bad", ["Busybox", "a:", "a:-x", "a@sha256:00", "/a", "a//b", "a:" + "x" * 129, "é"])
def test_invalid_references(bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"^tag: invalid reference format"):
        normalize_tag(bad)


def test_ids() -> None:
    assert full_id(HEX) == full_id(f"sha256:{HEX}") == f"sha256:{HEX}"
    assert full_id(HEX[:63]) is None
    assert id_prefix("0123") == "sha256:0123"
    assert id_prefix("sha256:0123") == "sha256:0123"
    assert id_prefix("012") is None
    assert id_prefix("busy") is None


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("TERM", "SIGTERM"),
        ("sigkill", "SIGKILL"),
        ("9", "SIGKILL"),
        ("SIGIOT", "SIGABRT"),
        ("RTMIN+3", "SIGRTMIN+3"),
    ],
)
def test_signals(given: str, name: str) -> None:
    assert canonical_signal(given) == name


@pytest.mark.parametrize("bad", ["", "NOPE", "0", "65", "SIGRTMIN+99"])
def test_bad_signals(bad: str) -> None:
    with pytest.raises(InvalidInput, match=r"^signal: unknown signal"):
        canonical_signal(bad)
