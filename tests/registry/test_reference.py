"""Docker reference rules, and the WWW-Authenticate parser: pure functions, with hypothesis."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.agent.registry.challenge import Challenge, parse_challenges
from atoll.agent.registry.options import parse_mirrors
from atoll.model.errors import InvalidInput
from atoll.model.reference import ImageReference, parse_image_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "shown"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", "", "busybox:latest"),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", "", "busybox:1.36"),
        ("library/busybox", "docker.io", "library/busybox", "latest", "", "busybox:latest"),
        ("docker.io/library/busybox", "docker.io", "library/busybox", "latest", "", "busybox:latest"),
        ("index.docker.io/org/app:2", "docker.io", "org/app", "2", "", "org/app:2"),
        ("org/app", "docker.io", "org/app", "latest", "", "org/app:latest"),
        ("ghcr.io/org/team/app:v1", "ghcr.io", "org/team/app", "v1", "", "ghcr.io/org/team/app:v1"),
        ("localhost/app", "localhost", "app", "latest", "", "localhost/app:latest"),
        ("127.0.0.1:5000/x/y:z", "127.0.0.1:5000", "x/y", "z", "", "127.0.0.1:5000/x/y:z"),
        ("Registry.Local/app", "Registry.Local", "app", "latest", "", "Registry.Local/app:latest"),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", "", DIGEST, f"busybox@{DIGEST}"),
        (f"h:5000/app:1@{DIGEST}", "h:5000", "app", "1", DIGEST, f"h:5000/app:1@{DIGEST}"),
    ],
)
def test_references(text: str, domain: str, path: str, tag: str, digest: str, shown: str) -> None:
    ref = parse_image_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == shown
    assert ref.reference == (digest or tag)
    assert parse_image_reference(str(ref)) == ref


def test_docker_hub_api_host() -> None:
    assert parse_image_reference("busybox").api_host == "registry-1.docker.io"
    assert parse_image_reference("h:1/a").api_host == "h:1"


@pytest.mark.parametrize(
    "text",
    ["", "UPPER", "a/UPPER", "app:", "app:-x", "app@sha256:123", "app@md5:" + "a" * 32, "a//b", "a/-b",
     "x" * 256, "h:port/app", ":tag", "app:" + "t" * 129],
)  # fmt: skip
def test_bad_references_name_the_field(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^reference: invalid reference format"):
        parse_image_reference(text)


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8})?", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_domain = st.one_of(st.just(""), st.from_regex(r"[a-z0-9]{1,10}\.[a-z]{2,5}(?::[0-9]{1,5})?", fullmatch=True))


@given(_domain, st.lists(_component, min_size=1, max_size=4), st.one_of(st.just(""), _tag))
def test_round_trip(domain: str, parts: list[str], tag: str) -> None:
    text = "/".join([domain, *parts] if domain else parts) + (f":{tag}" if tag else "")
    ref = parse_image_reference(text)
    assert isinstance(ref, ImageReference)
    assert parse_image_reference(str(ref)) == ref
    assert ref.tag == (tag or "latest")


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        parse_image_reference(text)


def test_challenges() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:org/app:pull,push", Basic realm="basic realm"'
    )
    assert parse_challenges(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example.com/token",
                "service": "registry.example.com",
                "scope": "repository:org/app:pull,push",
            },
        ),
        Challenge("basic", {"realm": "basic realm"}),
    ]
    assert parse_challenges('basic realm=x, REALM="y"') == [Challenge("basic", {"realm": "x"})]
    assert parse_challenges('Bearer realm="a\\"b"') == [Challenge("bearer", {"realm": 'a"b'})]
    assert parse_challenges("Basic") == [Challenge("basic", {})]
    assert parse_challenges("") == []


_token = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True)
_value = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@given(st.lists(st.tuples(_token, st.dictionaries(_token, _value, max_size=4)), max_size=3))
def test_challenges_round_trip(challenges: list[tuple[str, dict[str, str]]]) -> None:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = ", ".join(
        scheme + (" " + ", ".join(f"{k}={quote(v)}" for k, v in params.items()) if params else "")
        for scheme, params in challenges
    )
    parsed = parse_challenges(header)
    expected = []
    for scheme, params in challenges:
        lowered: dict[str, str] = {}
        for k, v in params.items():
            lowered.setdefault(k.lower(), v)
        expected.append(Challenge(scheme.lower(), lowered))
    assert parsed == expected


@given(st.text(max_size=300))
def test_challenge_parsing_never_fails(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.scheme


def test_mirror_settings() -> None:
    assert parse_mirrors("docker.io=http://127.0.0.1:5000, docker.io=https://m2/, ghcr.io=https://m3") == {
        "docker.io": ("http://127.0.0.1:5000", "https://m2"),
        "ghcr.io": ("https://m3",),
    }
    with pytest.raises(InvalidInput, match="ATOLL_REGISTRY_MIRRORS"):
        parse_mirrors("docker.io=ftp://x")
