"""From a layer blob to an unpacked directory, verified on the way.

One pass over the blob: hash the stored bytes, decompress, hash the tar, extract. The digests are
checked once the whole stream has been read, so a layer directory is only ever kept (renamed into the
store by the caller) after both its blob digest and its diff_id matched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from atoll.agent.images.compression import SNIFF_BYTES, Compression, decompressed, sniff
from atoll.agent.images.extract import unpack
from atoll.agent.images.plan import LayerPlan
from atoll.agent.images.sources import Blob, BlobSource
from atoll.agent.images.streams import HashingReader, Prefixed, Reader, Tee, verify
from atoll.model.errors import BadImage


def unpack_blob(src: BlobSource, plan: LayerPlan, dest: Path) -> int:
    """Extract the layer ``plan`` describes into the empty directory ``dest``; returns its size."""
    with src.open(plan.name) as blob:
        return _unpack_member(blob, plan, dest, None)[0]


def unpack_and_keep(src: BlobSource, plan: LayerPlan, dest: Path, keep: Path) -> tuple[int, str, Compression]:
    """Like :func:`unpack_blob`, and copy the blob, as the archive has it, to ``keep`` on the way.

    Returns (layer size, the blob's digest, its compression): what a push of the layer needs."""
    with src.open(plan.name) as blob, open(keep, "wb") as out:
        return _unpack_member(blob, plan, dest, out)


def _unpack_member(
    blob: Blob, plan: LayerPlan, dest: Path, copy: BinaryIO | None
) -> tuple[int, str, Compression]:
    if plan.size is not None and blob.size != plan.size:
        raise BadImage(f"{plan.label}: size mismatch: {blob.size} bytes, descriptor says {plan.size}")
    source: Reader = blob if copy is None else Tee(blob, copy)
    # Hash the stored bytes only if something names them or they are kept (a pull verified them already).
    raw = HashingReader(source, hashing=plan.digest is not None or copy is not None)
    head = raw.read(SNIFF_BYTES)
    kind = plan.compression if plan.compression is not None else sniff(head)
    with decompressed(Prefixed(head, raw), kind, plan.label) as stream:
        plain = HashingReader(stream)
        try:
            size = unpack(plain, os.fspath(dest), label=plan.label)
            plain.drain()
        except BadImage as exc:
            mismatch = _digest_mismatch(raw, plain, plan)
            if mismatch is not None:
                raise mismatch from exc
            raise
    raw.drain()
    _verify_layer(raw, plain, plan)
    return size, raw.digest, kind


def unpack_stream(blob: Reader, plan: LayerPlan, dest: Path) -> int:
    """Extract a layer whose blob arrives as ``blob`` (a download) into the empty directory ``dest``.

    ``blob`` checks its own digest and size: its last read raises BadImage if they are wrong, so the
    stream is always read to its very end before the layer counts. The diff_id is checked here."""
    raw = HashingReader(blob, hashing=False)
    head = raw.read(SNIFF_BYTES)
    kind = plan.compression if plan.compression is not None else sniff(head)
    try:
        with decompressed(Prefixed(head, raw), kind, plan.label) as stream:
            plain = HashingReader(stream)
            size = unpack(plain, os.fspath(dest), label=plan.label)
            plain.drain()
        raw.drain()
    except BadImage as exc:
        if "digest mismatch" not in exc.message:
            raw.drain()  # a blob that isn't what its digest says is the real story: this raises it
        raise
    verify(plain.digest, plan.diff_id, f"{plan.label}: uncompressed tar (diff_id)")
    return size


def unpack_rootfs(path: Path, dest: Path, label: str) -> tuple[str, int]:
    """Extract a root filesystem tar (plain or compressed) into ``dest``; returns (diff_id, size).

    Nothing names this tar's digest, so a missing end-of-archive block counts as truncation.
    """
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
        with decompressed(Prefixed(head, f), sniff(head), label) as stream:
            plain = HashingReader(stream)
            size = unpack(plain, os.fspath(dest), label=label, require_end=True)
            plain.drain()
    return plain.digest, size


def _digest_mismatch(raw: HashingReader, plain: HashingReader, plan: LayerPlan) -> BadImage | None:
    """After an extraction error: if the blob's digests don't match either, that is the real story."""
    try:
        plain.drain()
        complete = True
    except BadImage:
        complete = False  # the decoder failed too; the compressed digest may still tell
    try:
        raw.drain()
    except BadImage:
        return None
    try:
        _verify_layer(raw, plain if complete else None, plan)
    except BadImage as mismatch:
        return mismatch
    return None


def _verify_layer(raw: HashingReader, plain: HashingReader | None, plan: LayerPlan) -> None:
    verify(raw.digest, plan.digest, f"{plan.label}: blob")
    if plain is not None:
        verify(plain.digest, plan.diff_id, f"{plan.label}: uncompressed tar (diff_id)")
