"""``docker save`` archives: manifest.json lists each image's config, tags and layer members.

Two generations exist. Before Docker 25: ``<hex>.json`` configs and ``<v1-id>/layer.tar`` layers
(often symlinks to one another). Since 25: the same manifest.json pointing into an OCI layout's
``blobs/sha256/``. Both are read through manifest.json, as ``docker load`` does. Where a member's name
carries a digest (``<hex>.json``, ``blobs/sha256/<hex>``) the content must match it; every layer's
uncompressed digest must match the config's ``rootfs.diff_ids``, which the image id (the config's
digest) covers.
"""

from __future__ import annotations

import re

from atoll.agent.images.ocilayout import manifest_digests
from atoll.agent.images.plan import (
    ImagePlan,
    LayerPlan,
    load_json,
    parse_config,
    read_blob,
    want_dict,
    want_str_list,
)
from atoll.agent.images.sources import BlobSource
from atoll.agent.images.streams import sha256_digest
from atoll.model.errors import BadImage

_CONFIG_NAME = re.compile(r"(?:.*/)?(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?")
_BLOB_NAME = re.compile(r"(?:.*/)?blobs/sha256/([0-9a-f]{64})")


def docker_save_plans(src: BlobSource) -> list[ImagePlan]:
    entries = load_json(read_blob(src, "manifest.json", digest=None), "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise BadImage("manifest.json: expected a non-empty list of images")
    by_config = _manifests_from_index(src)
    plans = []
    for i, value in enumerate(entries):
        what = f"manifest.json[{i}]"
        entry = want_dict(value, what)
        config_name = entry.get("Config")
        if not isinstance(config_name, str) or not config_name:
            raise BadImage(f"{what}: missing Config")
        if "Layers" not in entry:
            raise BadImage(f"{what}: missing Layers")
        layer_names = want_str_list(entry.get("Layers"), f"{what}: Layers")
        tags = want_str_list(entry.get("RepoTags"), f"{what}: RepoTags", optional=True)
        named = _CONFIG_NAME.fullmatch(config_name)
        config_blob = read_blob(src, config_name, digest=f"sha256:{named[1]}" if named else None)
        config_digest = sha256_digest(config_blob)
        parsed = parse_config(config_blob, f"{what}: Config {config_name}")
        if len(layer_names) != len(parsed.diff_ids):
            counts = f"{len(layer_names)} Layers but {len(parsed.diff_ids)} diff_ids"
            raise BadImage(f"{what}: {counts} in Config {config_name}")
        layers = []
        for name, diff_id in zip(layer_names, parsed.diff_ids, strict=True):
            blob = _BLOB_NAME.fullmatch(name)
            layers.append(LayerPlan(name, diff_id, digest=f"sha256:{blob[1]}" if blob else None))
        manifest = by_config.get(config_digest)
        plans.append(
            ImagePlan(
                config_digest=config_digest,
                config_blob=config_blob,
                parsed=parsed,
                layers=layers,
                repo_tags=list(tags),
                manifest_digest=manifest[0] if manifest else "",
                extra_blobs={manifest[0]: manifest[1]} if manifest else {},
            )
        )
    return plans


def _manifests_from_index(src: BlobSource) -> dict[str, tuple[str, bytes]]:
    """Optional: manifest.json is authoritative (as for ``docker load``); a broken index.json is ignored."""
    if not src.exists("index.json"):
        return {}
    try:
        return manifest_digests(src)
    except BadImage:
        return {}
