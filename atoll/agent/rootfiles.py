"""Files of an instance's root filesystem, from the host: stat, tar out (``docker cp`` out, ``docker
export``), tar in (``docker cp`` in), the writable layer's changes (``docker diff``) and its size.

**Which tree.** The merged overlay: what the instance sees, minus the mounts made inside its own mount
namespace (volumes, /proc, /etc/hosts). A running instance's overlay is mounted at ``rootfs/``. A
stopped one's is mounted there for the operation, under the instance's lock (so it cannot start
meanwhile) and unmounted after; a crash in between leaves a mount its next start simply reuses.

**Untrusted contents.** The instance (or its image) controls every name and symlink in the tree, and a
running one can change them while we read. Paths are resolved inside the root (``rootpath.py``:
symlinks followed as if the root were ``/``). Reading walks directories by file descriptor with
``O_NOFOLLOW`` and opens each file relative to its directory's descriptor, so swapping a file for a
symlink mid-walk cannot make us read a host file: the link is archived as a link. Writing goes through
the image extractor (``images/extract.py``), which never follows a symlink and refuses ``..``.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from atoll.agent.images.extract import unpack
from atoll.agent.runtime.rootpath import resolve_in_root
from atoll.model.errors import InvalidInput, NotFound
from atoll.model.rootfiles import ChangeKind, FileChange, PathStat

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20

# Go's os.FileMode type bits, which Docker's path stat carries.
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


def go_mode(mode: int) -> int:
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {
        stat.S_IFDIR: _GO_DIR,
        stat.S_IFLNK: _GO_SYMLINK,
        stat.S_IFBLK: _GO_DEVICE,
        stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV,
        stat.S_IFIFO: _GO_PIPE,
        stat.S_IFSOCK: _GO_SOCKET,
    }.get(kind, 0)
    if mode & stat.S_ISUID:
        out |= _GO_SETUID
    if mode & stat.S_ISGID:
        out |= _GO_SETGID
    if mode & stat.S_ISVTX:
        out |= _GO_STICKY
    return out


def _rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _clean(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidInput(f"path: {path!r} must be absolute")
    return "/" + "/".join(p for p in path.split("/") if p and p != ".")


def _dir_path(root: Path, where: Path) -> str:
    """``where`` to open with ``O_NOFOLLOW``: the root itself as ``root/.``, since it may be a link of
    ours (a running instance's ``/proc/<pid>/root``); anything below it is opened as resolved."""
    return f"{root}/." if where == root else str(where)


@contextmanager
def _parent(root: Path, path: str) -> Iterator[tuple[int, str]]:
    """An open descriptor of ``path``'s parent directory (resolved inside ``root``), and its last name
    (``.`` for the root itself)."""
    clean = _clean(path)
    parent, _, leaf = clean.rpartition("/")
    where = _dir_path(root, resolve_in_root(root, parent or "/"))
    try:
        fd = os.open(where, _DIR)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no such file or directory: {path}") from None
    try:
        yield fd, leaf or "."
    finally:
        os.close(fd)


def path_stat(root: Path, path: str) -> PathStat:
    with _parent(root, path) as (fd, leaf):
        try:
            st = os.stat(leaf, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"no such file or directory: {path}") from None
        target = ""
        if stat.S_ISLNK(st.st_mode):
            target = "/" + str(resolve_in_root(root, _clean(path)).relative_to(root)).removeprefix(".")
        name = "/" if leaf == "." else leaf
        return PathStat(name, st.st_size, go_mode(st.st_mode), _rfc3339(st.st_mtime_ns), target)


class _Exactly(io.RawIOBase):
    """Exactly ``size`` bytes of ``fd``: a file a running instance shrinks is padded with zeros, one it
    grows is cut, so the tar header written first stays true."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        want = self._left if n < 0 else min(n, self._left)
        if want <= 0:
            return b""
        data = os.read(self._fd, min(want, _CHUNK)) or bytes(min(want, _CHUNK))
        self._left -= len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class _TarWriter:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.links: dict[tuple[int, int], str] = {}

    def add(self, dir_fd: int, name: str, arcname: str) -> None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone meanwhile (a running instance)
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFREG:
            self._file(dir_fd, name, st, info)
        elif kind == stat.S_IFDIR:
            self._dir(dir_fd, name, info)
        elif kind == stat.S_IFLNK:
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
            self.tar.addfile(info)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(info)
        elif kind == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
            self.tar.addfile(info)
        # sockets are not archived, as in Docker

    def _file(self, dir_fd: int, name: str, st: os.stat_result, info: tarfile.TarInfo) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
            self.tar.addfile(info)
            return
        try:
            fd = os.open(name, _FILE, dir_fd=dir_fd)
        except OSError:
            return  # replaced by a link or removed meanwhile: left out rather than followed
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                return
            info.size = now.st_size
            self.tar.addfile(info, _Exactly(fd, now.st_size))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            self.links[key] = info.name

    def _dir(self, dir_fd: int, name: str, info: tarfile.TarInfo) -> None:
        try:
            fd = os.open(name, _DIR, dir_fd=dir_fd)
        except OSError:
            return
        try:
            info.type = tarfile.DIRTYPE
            if info.name != ".":
                self.tar.addfile(info)
            for child in sorted(os.listdir(fd)):
                self.add(fd, child, child if info.name == "." else f"{info.name}/{child}")
        finally:
            os.close(fd)


def write_archive(root: Path, path: str, out: BinaryIO, *, contents: bool = False) -> None:
    """Tar ``path`` to ``out`` as ``docker cp`` wants it: named by its last component (a directory with
    everything under it). ``contents``: the entries of a directory, relative to it (``docker export``)."""
    # "dir/." (docker cp's "the contents of dir"): entries named "./...", as dockerd sends them.
    dot = path.rstrip("/").endswith("/.") or path.rstrip("/") == "."
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = _TarWriter(tar)
        with _parent(root, path) as (fd, leaf):
            if contents or dot:
                try:
                    where = os.open(leaf, _DIR, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    raise NotFound(f"no such directory: {path}") from None
                try:
                    for child in sorted(os.listdir(where)):
                        writer.add(where, child, f"./{child}" if dot and not contents else child)
                finally:
                    os.close(where)
            else:
                if leaf != "." and not _exists(fd, leaf):
                    raise NotFound(f"no such file or directory: {path}")
                writer.add(fd, leaf, leaf)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def extract_archive(root: Path, path: str, archive: BinaryIO) -> None:
    """Unpack a tar into the directory ``path`` (resolved inside ``root``), replacing what is there."""
    dest = _dir_path(root, resolve_in_root(root, _clean(path)))
    try:
        st = os.stat(dest, follow_symlinks=False)
    except FileNotFoundError:
        raise NotFound(f"no such directory: {path}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInput(f"path: {path} is not a directory")
    try:
        unpack(archive, dest, label=f"archive for {path}")
    finally:
        os.chmod(dest, stat.S_IMODE(st.st_mode), follow_symlinks=False)  # unpack sets 0755 on its root


def upper_changes(upper: Path, lower_has: Callable[[str], bool]) -> list[FileChange]:
    """``docker diff``: every entry of the writable layer, added (not in the image), changed, or
    deleted (an overlay whiteout: a 0/0 character device)."""
    out: list[FileChange] = []

    def walk(dir_fd: int, prefix: str) -> None:
        for name in sorted(os.listdir(dir_fd)):
            path = f"{prefix}/{name}"
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(FileChange(path, ChangeKind.DELETED))
                continue
            out.append(FileChange(path, ChangeKind.MODIFIED if lower_has(path) else ChangeKind.ADDED))
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(name, _DIR, dir_fd=dir_fd)
                try:
                    walk(fd, path)
                finally:
                    os.close(fd)

    top = os.open(upper, _DIR)
    try:
        walk(top, "")
    finally:
        os.close(top)
    return out


def in_layers(layers_top_first: list[Path], path: str) -> bool:
    """Whether ``path`` exists in the image: the topmost layer that mentions it decides."""
    parts = path.strip("/").split("/")
    for layer in layers_top_first:
        here = layer.joinpath(*parts)
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            if _opaque_above(layer, parts):
                return False
            continue
        return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
    return False


def _opaque_above(layer: Path, parts: list[str]) -> bool:
    for i in range(1, len(parts)):
        try:
            if (
                os.getxattr(layer.joinpath(*parts[:i]), "trusted.overlay.opaque", follow_symlinks=False)
                == b"y"
            ):
                return True
        except OSError:
            continue
    return False


def tree_size(top: Path) -> int:
    """Docker's size of a layer: the bytes of its regular files, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, files in os.walk(top):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def without_mountpoints(changes: list[FileChange], mountpoints: set[str]) -> list[FileChange]:
    """Drop what the runtime made to mount things on (``/etc/resolv.conf``, ``/dev``...) and the
    directories listed only because of those, as Docker's init layer hides them."""
    dropped = {c.path for c in changes if c.path in mountpoints}
    kept = [
        c for c in changes if c.path not in dropped and not any(c.path.startswith(m + "/") for m in dropped)
    ]
    out = []
    for c in kept:
        prefix = c.path + "/"
        only_mounts = any(d.startswith(prefix) for d in dropped) and not any(
            k.path.startswith(prefix) for k in kept
        )
        if not (c.kind is ChangeKind.MODIFIED and only_mounts):
            out.append(c)
    return out
