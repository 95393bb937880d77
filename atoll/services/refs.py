"""Image references, Docker-style and pure.

A reference is ``[domain/]path[:tag]``. Tags are normalized as Docker shows them: a missing tag is
``latest`` and Docker Hub's implicit ``docker.io/library/`` is dropped, while other registries and
namespaces are kept as given. Image ids are ``sha256:<64 hex>``; a unique prefix of at least
``MIN_ID_PREFIX`` hex digits, with or without ``sha256:``, also names an image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atoll.model.errors import InvalidInput

MIN_ID_PREFIX = 4
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_FULL_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
_ID_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]+)$")
_HUB_DOMAINS = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Reference:
    repo: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repo}:{self.tag}"


def _is_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first != first.lower()


def parse_reference(text: str, field: str = "tag") -> Reference:
    """Parse and normalize; raises InvalidInput naming ``field`` for anything Docker would refuse."""

    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"{field}: invalid reference format {text!r}: {why}")

    if "@" in text:
        raise bad("digest references are not supported here")
    name, tag = text, DEFAULT_TAG
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        name, tag = text[:colon], text[colon + 1 :]
        if not _TAG.match(tag):
            raise bad("the tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'")
    if not name or len(name) > 255:
        raise bad("the name must be 1-255 characters")
    parts = name.split("/")
    domain = ""
    if len(parts) > 1 and _is_domain(parts[0]):
        domain, parts = parts[0], parts[1:]
        if not _DOMAIN.match(domain):
            raise bad(f"bad registry {domain!r}")
    for part in parts:
        if not _COMPONENT.match(part):
            raise bad("names are lowercase letters, digits and single separators (. _ __ -)")
    if domain in _HUB_DOMAINS:
        domain = ""
    if not domain and len(parts) == 2 and parts[0] == "library":
        parts = parts[1:]
    repo = "/".join([domain, *parts] if domain else parts)
    return Reference(repo=repo, tag=tag)


def normalize_tag(text: str, field: str = "tag") -> str:
    return str(parse_reference(text, field))


def full_id(text: str) -> str | None:
    """``sha256:<hex>`` when ``text`` is a complete image id, with or without the algorithm."""
    m = _FULL_ID.match(text)
    return f"sha256:{m.group(1)}" if m else None


def id_prefix(text: str) -> str | None:
    """The ``sha256:<hex...>`` prefix to search for, when ``text`` can be a short id."""
    m = _ID_PREFIX.match(text)
    if m is None or len(m.group(1)) < MIN_ID_PREFIX:
        return None
    return f"sha256:{m.group(1)}"
