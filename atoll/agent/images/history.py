"""An image's history: the config's ``history`` steps, each step that made a layer paired with that
layer (in order) and its stored size. Layers the history does not account for (configs written
without one) get a step of their own, so every layer shows up once."""

from __future__ import annotations

import json
from typing import Any

from atoll.agent.images.importer import layer_size
from atoll.agent.images.layout import Layout
from atoll.model.image import ImageRecord
from atoll.model.imagehistory import HistoryEntry


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def image_history(layout: Layout, record: ImageRecord) -> list[HistoryEntry]:
    """Oldest first."""
    try:
        config = json.loads(layout.blob(record.id).read_bytes())
        steps = config.get("history") if isinstance(config, dict) else None
    except (OSError, ValueError):
        steps = None
    layers = list(record.layers)
    out = []
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, dict):
            continue
        empty = step.get("empty_layer") is True or not layers
        layer = "" if empty else layers.pop(0)
        size = 0 if empty else layer_size(layout.layer(layer))
        out.append(
            HistoryEntry(
                _text(step, "created"), _text(step, "created_by"), _text(step, "comment"), empty, size, layer
            )
        )
    for layer in layers:
        out.append(HistoryEntry(record.created, "", "", False, layer_size(layout.layer(layer)), layer))
    return out
