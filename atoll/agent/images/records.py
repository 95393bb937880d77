"""What the store remembers of an image: its record and the blobs it holds, as images/<hex>.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from atoll.model.image import ImageConfig, ImageRecord

FORMAT = 1


@dataclass(frozen=True)
class StoredImage:
    record: ImageRecord
    blobs: list[str] = field(default_factory=list)
    """Digests of the blobs this image keeps in blobs/: its config and any manifest or index."""

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "record": asdict(self.record), "blobs": list(self.blobs)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StoredImage:
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown image record format {doc.get('format')!r}")
        r = dict(doc["record"])
        config = ImageConfig(**r.pop("config"))
        record = ImageRecord(config=config, **r)
        return cls(record=record, blobs=list(doc["blobs"]))
