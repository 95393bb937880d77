"""Docker image references, parsed by Docker's rules: ``[domain[:port]/]path[:tag][@sha256:hex]``.

The first path component is a registry domain when it holds a ``.`` or a ``:``, is ``localhost``, or has
upper-case letters; otherwise the image lives on Docker Hub, whose one-component names sit under
``library/``. Tags default to ``latest`` unless a digest is given. Pure, so the controller (which names
images in its catalog) and the agent (which talks to registries) read references the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atoll.model.errors import InvalidInput

DOCKER_HUB = "docker.io"
HUB_API_HOST = "registry-1.docker.io"
"""Docker Hub's registry API lives on another host than its name."""
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_LABEL = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
_DOMAIN = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
MAX_NAME = 255


@dataclass(frozen=True)
class ImageReference:
    domain: str
    """``docker.io`` for Docker Hub, else the registry as written (``host`` or ``host:port``)."""
    path: str
    """The repository inside the registry: ``library/busybox``, ``org/app``."""
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """The full name as Docker shows it, without tag or digest: ``busybox``, ``ghcr.io/org/app``."""
        if self.domain == DOCKER_HUB:
            return self.path.removeprefix("library/") if self.path.count("/") == 1 else self.path
        return f"{self.domain}/{self.path}"

    @property
    def reference(self) -> str:
        """What goes into ``/v2/<path>/manifests/<reference>``: the digest if given, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def api_host(self) -> str:
        return HUB_API_HOST if self.domain == DOCKER_HUB else self.domain

    def with_tag(self, tag: str) -> ImageReference:
        return ImageReference(self.domain, self.path, tag, "")

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_image_reference(text: str, field: str = "reference") -> ImageReference:
    """Parse and normalize; raises InvalidInput naming ``field`` for what Docker would refuse."""

    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"{field}: invalid reference format {text!r}: {why}")

    name, digest = text, ""
    if "@" in text:
        name, _, digest = text.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise bad("a digest is sha256: followed by 64 lowercase hex digits")
    tag = ""
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise bad("the tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'")
    if not name:
        raise bad("the name is empty")
    if len(name) > MAX_NAME:
        raise bad(f"the name is longer than {MAX_NAME} characters")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN.fullmatch(first):
            raise bad(f"bad registry {first!r}")
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, name
    for part in path.split("/"):
        if not _COMPONENT.fullmatch(part):
            raise bad("names are lowercase letters, digits and single separators (. _ __ -)")
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not tag and not digest:
        tag = DEFAULT_TAG
    return ImageReference(domain=domain, path=path, tag=tag, digest=digest)
