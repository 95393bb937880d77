"""One step of an image's history, as its config records it (``docker history`` rows)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HistoryEntry:
    created: str
    created_by: str
    comment: str
    empty_layer: bool
    """True for a step that made no layer (ENV, CMD...): its size is 0."""
    size: int
    layer: str = ""
    """The diff_id of the layer the step made, if it made one."""
