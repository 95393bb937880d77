"""Writing stored images out as a ``docker save`` archive, the format ``docker load`` reads.

The archive has Docker 25's shape, which older and newer loaders both read: ``manifest.json`` (the
index ``docker load`` goes by), ``repositories``, and an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/``) holding each image's config, one uncompressed tar per layer and an
OCI manifest.

A layer tar must hash to the diff_id its config names, or a loader refuses it. The store keeps the
original blob beside layers that came from a pull or a build (``blobs.py``); decompressed, it is that
tar again, and it is checked against the diff_id before it goes out. Layers imported from archives
keep no blob: they are re-tarred from their unpacked directory (overlay whiteouts turned back into
``.wh.`` entries), which gives a different digest, so the image's config is rewritten with the new
diff_ids and the archive carries a new image id for it. The layers' content is the same.

Each layer is written to a scratch file first (its size goes in the tar header before its bytes); the
archive itself is produced as it is read, with back-pressure (``atoll/agent/threadstream.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from atoll.agent.images.blobs import kept_blob
from atoll.agent.images.compression import SNIFF_BYTES, decompressed, sniff
from atoll.agent.images.layout import Layout, remove_tree
from atoll.agent.images.streams import CHUNK, Prefixed, digest_hex, sha256_digest
from atoll.agent.threadstream import stream_writes
from atoll.model.errors import NotFound
from atoll.model.image import ImageRecord

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OPAQUE = "trusted.overlay.opaque"


class _Archive:
    """The archive being written: each blob once, then the index files."""

    def __init__(self, out: tarfile.TarFile, layout: Layout, scratch: Path) -> None:
        self.out = out
        self.layout = layout
        self.scratch = scratch
        self.written: set[str] = set()
        self.layer_tars: dict[str, tuple[str, int]] = {}
        """diff_id in the store -> (digest, size) of the tar written for it."""

    def add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self.out.addfile(info, io.BytesIO(data))

    def add_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if digest not in self.written:
            self.written.add(digest)
            self.add_bytes(f"blobs/sha256/{digest_hex(digest)}", data)
        return digest

    def add_layer(self, diff_id: str) -> tuple[str, int]:
        done = self.layer_tars.get(diff_id)
        if done is not None:
            return done
        layer_dir = self.layout.layer(diff_id)
        if not (layer_dir / "diff").is_dir():
            raise NotFound(f"layer {diff_id} is not in the image store")
        tmp = self.scratch / "layer.tar"
        digest = _original_tar(layer_dir, diff_id, tmp)
        if digest is None:
            digest = _retar(layer_dir / "diff", tmp)
        size = tmp.stat().st_size
        if digest not in self.written:
            self.written.add(digest)
            info = tarfile.TarInfo(f"blobs/sha256/{digest_hex(digest)}")
            info.size = size
            info.mode = 0o644
            with open(tmp, "rb") as f:
                self.out.addfile(info, f)
        tmp.unlink()
        self.layer_tars[diff_id] = (digest, size)
        return digest, size


def write_docker_save(
    layout: Layout, records: list[tuple[ImageRecord, list[str]]], out: BinaryIO, scratch: Path
) -> None:
    """Write ``records`` (each with the tags to give it) to ``out`` as one ``docker save`` tar."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        archive = _Archive(tar, layout, scratch)
        manifest_json = []
        index = []
        repositories: dict[str, dict[str, str]] = {}
        for record, tags in records:
            config_blob = layout.blob(record.id).read_bytes()
            layers = [archive.add_layer(d) for d in record.layers]
            if [d for d, _ in layers] != record.layers:  # re-tarred: the config names the new tars
                config = json.loads(config_blob)
                config.setdefault("rootfs", {"type": "layers"})["diff_ids"] = [d for d, _ in layers]
                config_blob = json.dumps(config, separators=(",", ":")).encode()
            config_digest = archive.add_blob(config_blob)
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_blob)},
                "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
            }
            manifest_blob = json.dumps(manifest, separators=(",", ":")).encode()
            manifest_digest = archive.add_blob(manifest_blob)
            descriptor = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest_blob)}
            for tag in tags or [""]:
                annotations = {"io.containerd.image.name": tag} if tag else {}
                index.append({**descriptor, "annotations": annotations} if tag else descriptor)
            manifest_json.append(
                {
                    "Config": f"blobs/sha256/{digest_hex(config_digest)}",
                    "RepoTags": tags or None,
                    "Layers": [f"blobs/sha256/{digest_hex(d)}" for d, _ in layers],
                }
            )
            for tag in tags:
                repo, _, name = tag.rpartition(":")
                repositories.setdefault(repo, {})[name] = digest_hex(
                    layers[-1][0] if layers else config_digest
                )
        archive.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        index_doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index,
        }
        archive.add_bytes("index.json", json.dumps(index_doc).encode())
        archive.add_bytes("manifest.json", json.dumps(manifest_json).encode())
        if repositories:
            archive.add_bytes("repositories", json.dumps(repositories).encode())


def _original_tar(layer_dir: Path, diff_id: str, dest: Path) -> str | None:
    """Decompress the kept blob into ``dest``; its digest if that is ``diff_id``, else None."""
    kept = kept_blob(layer_dir)
    if kept is None:
        return None
    h = hashlib.sha256()
    with open(kept.path, "rb") as raw, open(dest, "wb") as f:
        head = raw.read(SNIFF_BYTES)
        with decompressed(Prefixed(head, raw), sniff(head), f"layer {diff_id}") as reader:
            while chunk := reader.read(CHUNK):
                h.update(chunk)
                f.write(chunk)
    digest = "sha256:" + h.hexdigest()
    return digest if digest == diff_id else None


def _retar(diff: Path, dest: Path) -> str:
    """Tar an unpacked layer as a layer tar: overlay whiteouts become ``.wh.`` entries again."""
    with open(dest, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(diff):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, diff)
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                arc = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(path)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    info = tarfile.TarInfo(os.path.join(os.path.dirname(arc), ".wh." + name))
                    info.mtime = int(st.st_mtime)
                    tar.addfile(info)
                    continue
                info = tar.gettarinfo(path, arcname=arc)
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as member:
                        tar.addfile(info, member)
                else:
                    tar.addfile(info)
                if stat.S_ISDIR(st.st_mode) and _opaque(path):
                    opq = tarfile.TarInfo(os.path.join(arc, ".wh..wh..opq"))
                    opq.mtime = int(st.st_mtime)
                    tar.addfile(opq)
    h = hashlib.sha256()
    with open(dest, "rb") as done:
        while chunk := done.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def export_images(
    layout: Layout, get: Callable[[str], ImageRecord | None], images: Mapping[str, list[str]]
) -> AsyncIterator[bytes]:
    """The ``docker save`` stream of ``images`` (image id -> tags); NotFound before any byte if one is
    missing."""
    records = []
    for image_id, tags in images.items():
        record = get(image_id)
        if record is None:
            raise NotFound(f"image {image_id} is not on this host")
        records.append((record, list(tags)))
    scratch = layout.scratch("export-")
    return stream_writes(
        lambda out: write_docker_save(layout, records, out, scratch), lambda: remove_tree(scratch)
    )
