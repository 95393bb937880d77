"""An instance's writable layer leaving one host and arriving on another (cold migration, issue 6).

The source streams its upper directory as a tar (``export``); the target unpacks it into a staging
directory outside ``instances/`` (``receive``: the reconcile loop never takes it for an orphan), and
moves it into place between create and start (``install``). To keep the downtime short the controller
copies twice: once while the instance still runs (everything), then after it stops only what changed
since the first copy started (``since``: entries whose ctime is at or after it). Every tar carries a
manifest of every path the layer holds, so the target also drops what was deleted in between.

Extended attributes travel too, as ``SCHILY.xattr.<name>`` PAX records (the names GNU tar and
libarchive use; a binary value is kept byte for byte): file capabilities (``security.capability``),
``user.*`` attributes, ACLs, and overlayfs' own markers on the upper directory, above all
``trusted.overlay.opaque`` (a directory that hides the image's one below it). Without them a moved
instance would see the image's deleted directory contents again and lose its binaries' capabilities.
``trusted.overlay.origin`` is left out: it is a file handle of the source host's lower layer, which
means nothing on the target (overlayfs treats its absence as "copied up without a known origin").

The tar goes through the controller, so the target does not trust it blindly: no member may be
absolute or climb out with ``..``, and no member is written through a symlink (an existing entry in
the way is replaced, never followed).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from atoll.model.errors import InvalidInput, NotFound

MANIFEST = ".atoll-manifest"
CHUNK = 1 << 20
XATTR = "SCHILY.xattr."
HOST_BOUND_XATTRS = frozenset({"trusted.overlay.origin"})
"""Attributes that describe the source host's filesystems, not the file: never copied."""
ENCODING = "utf-8"


def staging_dir(data_dir: Path, instance_id: str) -> Path:
    return data_dir / "incoming" / instance_id


def _entries(upper: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(upper):
        rel = os.path.relpath(root, upper)
        for name in dirs + files:
            out.append(name if rel == "." else f"{rel}/{name}")
    return sorted(out)


def _xattrs(path: Path) -> dict[str, bytes]:
    found = {}
    for name in os.listxattr(path, follow_symlinks=False):
        if name in HOST_BOUND_XATTRS:
            continue
        try:
            found[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:  # removed since it was listed (the instance still runs)
            if e.errno != errno.ENODATA:
                raise
    return found


def _with_xattrs(path: Path) -> Callable[[tarfile.TarInfo], tarfile.TarInfo]:
    def add(info: tarfile.TarInfo) -> tarfile.TarInfo:
        # Binary values ride as surrogate escapes: tarfile writes them back as the raw bytes.
        found = {XATTR + n: v.decode(ENCODING, "surrogateescape") for n, v in _xattrs(path).items()}
        if found:
            info.pax_headers = {**info.pax_headers, **found}
        return info

    return add


def _write_tar(upper: Path, since: float, out: Path) -> None:
    paths = _entries(upper)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT, encoding=ENCODING) as tar:
        vanished = set()
        for rel in paths:
            path = upper / rel
            try:
                st = path.lstat()
                if since and st.st_ctime < since and not path.is_dir():
                    continue
                tar.add(path, arcname=rel, recursive=False, filter=_with_xattrs(path))
            except FileNotFoundError:
                # Deleted by the instance (it runs during the pre-copy) since the walk listed it: no
                # longer part of the layer. The delta, taken once it has stopped, settles the rest.
                vanished.add(rel)
        manifest = "\n".join(p for p in paths if p not in vanished).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))


async def export(upper: Path, tmp_dir: Path, since: float) -> AsyncIterator[bytes]:
    """The writable layer as a tar: every entry, or (``since`` > 0) those changed at or after it."""
    if not upper.is_dir():
        raise NotFound(f"instance writable layer {upper.parent.name} is not on this host")
    fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".tar")
    os.close(fd)
    out = Path(name)
    try:
        await asyncio.to_thread(_write_tar, upper, since, out)
        with out.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk
    finally:
        out.unlink(missing_ok=True)


def _inside(root: Path, rel: str) -> Path:
    if rel.startswith("/") or ".." in Path(rel).parts or not rel.strip("/."):
        raise InvalidInput(f"archive: member {rel!r} is outside the writable layer")
    target = root / rel
    parent = target.parent
    # No parent may be a symlink: a member must never be written through one.
    while parent != root:
        if parent.is_symlink():
            raise InvalidInput(f"archive: member {rel!r} goes through a symlink")
        parent = parent.parent
    return target


def _set_xattrs(target: Path, member: tarfile.TarInfo) -> None:
    """Give ``target`` exactly the member's attributes. After the extraction, which chowns: a change of
    owner clears ``security.capability``. A directory kept from an earlier copy also loses those that
    were removed meanwhile."""
    wanted = {
        key[len(XATTR) :]: value.encode(ENCODING, "surrogateescape")
        for key, value in member.pax_headers.items()
        if key.startswith(XATTR) and key[len(XATTR) :] not in HOST_BOUND_XATTRS
    }
    have = _xattrs(target)
    for name in have.keys() - wanted.keys():
        os.removexattr(target, name, follow_symlinks=False)
    for name, value in wanted.items():
        if have.get(name) != value:
            try:
                os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as e:
                raise InvalidInput(
                    f"archive: member {member.name!r}: cannot set attribute {name}: {e}"
                ) from e


def _unpack(archive: Path, stage: Path) -> None:
    stage.mkdir(parents=True, exist_ok=True)
    manifest: set[str] | None = None
    with tarfile.open(archive, "r", encoding=ENCODING) as tar:
        for member in tar:
            if member.name == MANIFEST:
                data = tar.extractfile(member)
                assert data is not None
                manifest = {line for line in data.read().decode().splitlines() if line}
                continue
            target = _inside(stage, member.name)
            if target.is_symlink() or (target.exists() and not (target.is_dir() and member.isdir())):
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            tar.extract(member, stage, set_attrs=True, numeric_owner=True, filter="fully_trusted")
            _set_xattrs(target, member)
    if manifest is not None:
        # Deepest first, so a directory is emptied before it is judged.
        for rel in reversed(_entries(stage)):
            if rel not in manifest:
                path = stage / rel
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()


async def receive(stage: Path, tmp_dir: Path, archive: AsyncIterator[bytes]) -> None:
    """Unpack a tar from ``export`` on top of what earlier tars staged here."""
    fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".tar")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in archive:
                await asyncio.to_thread(f.write, chunk)
        await asyncio.to_thread(_unpack, path, stage)
    finally:
        path.unlink(missing_ok=True)


def install(stage: Path, upper: Path) -> None:
    """Make the staged layer the instance's writable layer (before it starts: nothing is mounted)."""
    if not stage.is_dir():
        raise NotFound(f"no writable layer was received for instance {upper.parent.name}")
    if upper.exists():
        shutil.rmtree(upper)
    upper.parent.mkdir(parents=True, exist_ok=True)
    os.rename(stage, upper)


def discard(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
