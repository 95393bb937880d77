"""What crosses the controller/agent boundary for registry transfers: credentials and progress events."""

from __future__ import annotations

from dataclasses import dataclass, field

from atoll.model.image import ImageRecord


@dataclass(frozen=True)
class Credential:
    """A login for one registry. The secret never appears in a repr, a log line or an API answer."""

    username: str
    secret: str = field(repr=False)
    """A password, or an identity token when ``username`` is ``<token>`` (as Docker stores them)."""


@dataclass(frozen=True)
class TransferEvent:
    """Progress of one layer (or the image as a whole when ``id`` is empty): Docker's pull/push lines."""

    status: str
    id: str = ""
    """Short digest of the layer (12 hex digits), as Docker shows it."""
    current: int = 0
    total: int | None = None


@dataclass(frozen=True)
class Pulled:
    """The last event of a pull: the image now on the host, and the digest its registry names it by."""

    record: ImageRecord
    digest: str


@dataclass(frozen=True)
class Pushed:
    """The last event of a push: the manifest digest the registry now holds under the tag."""

    digest: str
    size: int


PullEvent = TransferEvent | Pulled
PushEvent = TransferEvent | Pushed
