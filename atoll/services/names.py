"""Random instance names in Docker's ``adjective_noun`` style, with words of our own."""

from __future__ import annotations

import secrets

ADJECTIVES = (
    "amber", "azure", "brave", "calm", "clever", "coral", "crisp", "daring", "deep", "eager",
    "fervent", "gentle", "golden", "happy", "hidden", "jolly", "keen", "kind", "lively", "lucid",
    "merry", "misty", "nimble", "noble", "patient", "quiet", "quick", "radiant", "rapid", "serene",
    "sharp", "shiny", "silent", "steady", "sunny", "swift", "tidal", "tranquil", "vivid", "wise",
)  # fmt: skip

NOUNS = (
    "albatross", "anchor", "archipelago", "barracuda", "beacon", "breaker", "cay", "current", "dolphin",
    "driftwood", "dune", "frigate", "gull", "harbor", "heron", "island", "isthmus", "kelp", "lagoon",
    "lighthouse", "mangrove", "manta", "marlin", "narwhal", "nautilus", "orca", "pelican", "pearl",
    "reef", "sandbar", "schooner", "seal", "shoal", "starfish", "surf", "tern", "tide", "turtle",
    "urchin", "wave",
)  # fmt: skip


def random_name() -> str:
    return f"{secrets.choice(ADJECTIVES)}_{secrets.choice(NOUNS)}"
