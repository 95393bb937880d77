"""Unpack one untrusted layer tar into an empty directory, as an overlayfs lower layer.

Safety rests on one rule: every name is resolved component by component from an open directory fd,
with ``O_NOFOLLOW | O_DIRECTORY``, and every creation is relative to such a fd. So nothing is ever
written outside the layer directory, whatever the archive says:

- ``..`` components are refused. A leading ``/`` is stripped: absolute member names are relative to the
  layer root, as Docker treats them. Names are limited to PATH_MAX bytes and 256 components.
- A parent component that is a symlink is refused (BadImage), never followed; a missing parent is
  created (0755, root), as Docker does.
- Symlink targets are stored as given: they are only ever followed inside the container.
- Hard links must name a regular file or symlink already extracted into this same layer, found the
  same way. Existing entries are unlinked before anything is written, so a link can't be written through.
- Device nodes are refused; FIFOs are allowed.
- Ownership, mode (setuid/setgid included: see ``store.py`` for why that is safe), mtimes and the
  xattrs ``security.capability`` and ``user.*`` are kept. Others (``trusted.*``, ``security.selinux``,
  ``user.overlay.*``) are dropped: an image must not forge overlayfs metadata.

Whiteouts become what overlayfs reads: ``.wh.NAME`` a 0/0 character device ``NAME``, and
``.wh..wh..opq`` the xattr ``trusted.overlay.opaque=y`` on its directory. Other ``.wh..wh.*`` entries
(AUFS bookkeeping) are skipped, as Docker does. A later entry replaces an earlier one of the same name.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections import OrderedDict

from atoll.agent.images.streams import CHUNK, Reader
from atoll.agent.images.syncfs import start_writeback
from atoll.agent.images.tarstream import Kind, TarEntry, TarReader
from atoll.model.errors import BadImage, RuntimeFailure

MAX_NAME = 4096
MAX_DEPTH = 256
"""Real images nest a few dozen levels; the bound keeps rmtree (a frame per level) off the recursion limit."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_HOST_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
"""Failures of the host, not of the image: reported as RuntimeFailure so the image isn't blamed."""

WRITEBACK_MIN = 256 << 10
"""Files this large get their writeback started as soon as they are written (see syncfs.py)."""
_DIR_CACHE = 64
_OPAQUE = b".wh..wh..opq"
_WHITEOUT = b".wh."


def unpack(stream: Reader, dest: str, *, label: str, require_end: bool = False) -> int:
    """Extract the tar ``stream`` into the empty directory ``dest``.

    Returns the layer's size: the bytes of its regular files, each inode once (Docker's layer size).
    """
    root_fd = os.open(dest, _DIR_FLAGS)
    try:
        os.fchmod(root_fd, 0o755)
        writer = _LayerWriter(root_fd, label)
        try:
            reader = TarReader(stream, label=label, require_end=require_end)
            for entry in reader:
                writer.apply(entry, reader)
            writer.finish()
        finally:
            writer.close()
        return writer.size
    finally:
        os.close(root_fd)


def split_name(name: bytes, label: str, shown: str) -> tuple[bytes, ...]:
    if len(name) > MAX_NAME:
        raise BadImage(f"{label}: {shown[:80]}...: name longer than {MAX_NAME} bytes")
    if b"\0" in name:
        raise BadImage(f"{label}: {shown}: NUL byte in name")
    parts = tuple(p for p in name.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise BadImage(f"{label}: {shown}: '..' in a path is not allowed")
    if len(parts) > MAX_DEPTH:
        raise BadImage(f"{label}: {shown[:80]}...: more than {MAX_DEPTH} path components")
    return parts


def wanted_xattr(name: bytes) -> bool:
    if name == b"security.capability":
        return True
    return name.startswith(b"user.") and not name.startswith(b"user.overlay.")


class _LayerWriter:
    def __init__(self, root_fd: int, label: str) -> None:
        self._root = root_fd
        self._label = label
        self._dirs: OrderedDict[tuple[bytes, ...], int] = OrderedDict()
        self._dir_times: dict[tuple[bytes, ...], int] = {}
        self.size = 0

    def close(self) -> None:
        self._forget_dirs()

    def apply(self, entry: TarEntry, reader: TarReader) -> None:
        self._trim()
        try:
            self._apply(entry, reader)
        except (BadImage, RuntimeFailure):
            raise
        except ValueError as exc:
            raise BadImage(f"{self._label}: {entry.display}: {exc}") from exc
        except OSError as exc:
            why = exc.strerror or str(exc)
            if exc.errno in _HOST_ERRNOS:
                raise RuntimeFailure(f"unpacking {self._label}: {entry.display}: {why}") from exc
            raise BadImage(f"{self._label}: {entry.display}: {why}") from exc

    def finish(self) -> None:
        """Set directory mtimes last: creating their children would have changed them."""
        for parts, mtime_ns in self._dir_times.items():
            self._trim()
            if not parts:
                os.utime(self._root, ns=(mtime_ns, mtime_ns))
                continue
            try:
                parent = self._dir(parts[:-1], entry="", create=False)
                if stat.S_ISDIR(os.lstat(parts[-1], dir_fd=parent).st_mode):
                    os.utime(parts[-1], ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)
            except (BadImage, FileNotFoundError, NotADirectoryError):
                continue  # replaced by a later entry; _clear() forgets most of those already

    def _apply(self, entry: TarEntry, reader: TarReader) -> None:
        shown = entry.display
        parts = split_name(entry.name, self._label, shown)
        if not parts:
            if entry.kind is not Kind.DIR:
                raise BadImage(f"{self._label}: {shown}: the layer root must be a directory")
            self._set_owner_mode(self._root, entry)
            self._set_xattrs(self._root, entry)
            self._dir_times[()] = entry.mtime_ns
            return
        leaf = parts[-1]
        if leaf.startswith(_WHITEOUT):
            self._whiteout(parts, shown)
            return
        if entry.kind in (Kind.CHAR, Kind.BLOCK):
            raise BadImage(f"{self._label}: {shown}: device nodes are not allowed in images")
        if entry.kind is Kind.HARDLINK:
            self._hardlink(parts, entry, shown)
            return
        parent = self._dir(parts[:-1], shown, create=True)
        if entry.kind is Kind.DIR:
            self._directory(parent, parts, entry)
        elif entry.kind is Kind.FILE:
            self._file(parent, parts, entry, reader)
        elif entry.kind is Kind.SYMLINK:
            self._clear(parent, parts)
            os.symlink(entry.linkname, leaf, dir_fd=parent)
            os.chown(leaf, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(leaf, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)
        else:
            self._clear(parent, parts)
            os.mkfifo(leaf, 0o600, dir_fd=parent)
            os.chown(leaf, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
            os.chmod(leaf, entry.mode, dir_fd=parent)  # just made in our private dir: nothing to follow
            os.utime(leaf, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _whiteout(self, parts: tuple[bytes, ...], shown: str) -> None:
        leaf = parts[-1]
        if leaf == _OPAQUE:
            fd = self._dir(parts[:-1], shown, create=True)
            os.setxattr(fd, "trusted.overlay.opaque", b"y")
            return
        if leaf.startswith(_WHITEOUT + _WHITEOUT):
            return  # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here, as in Docker
        name = leaf[len(_WHITEOUT) :]
        if not name:
            raise BadImage(f"{self._label}: {shown}: a whiteout must name what it deletes")
        parent = self._dir(parts[:-1], shown, create=True)
        self._clear(parent, (*parts[:-1], name))
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)

    def _directory(self, parent: int, parts: tuple[bytes, ...], entry: TarEntry) -> None:
        leaf = parts[-1]
        existing = _lstat(parent, leaf)
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            self._clear(parent, parts)
            os.mkdir(leaf, 0o700, dir_fd=parent)
        fd = self._dir(parts, entry.display, create=False)
        self._set_owner_mode(fd, entry)
        self._set_xattrs(fd, entry)
        self._dir_times[parts] = entry.mtime_ns

    def _file(self, parent: int, parts: tuple[bytes, ...], entry: TarEntry, reader: TarReader) -> None:
        try:  # O_EXCL: never opens what is there, symlink or not; replace it only if it exists
            fd = os.open(parts[-1], _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:
            self._clear(parent, parts)
            fd = os.open(parts[-1], _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            while chunk := reader.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            self._set_owner_mode(fd, entry)  # chown before chmod: chown clears setuid bits
            self._set_xattrs(fd, entry)  # after chown, which clears security.capability
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            if entry.size >= WRITEBACK_MIN:
                start_writeback(fd)  # the disk starts now; the syncfs before the record finds it done
            self.size += entry.size
        finally:
            os.close(fd)

    def _hardlink(self, parts: tuple[bytes, ...], entry: TarEntry, shown: str) -> None:
        target_shown = entry.linkname.decode("utf-8", "backslashreplace")
        target = split_name(entry.linkname, self._label, target_shown)
        if not target:
            raise BadImage(f"{self._label}: {shown}: hard link to the layer root")
        missing = f"hard link target {target_shown}"
        target_parent = self._dir(target[:-1], shown, create=False, missing=missing)
        st = _lstat(target_parent, target[-1])
        if st is None:
            raise BadImage(f"{self._label}: {shown}: {missing} is not in this layer")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise BadImage(f"{self._label}: {shown}: {missing} is not a regular file or symlink")
        parent = self._dir(parts[:-1], shown, create=True)
        existing = _lstat(parent, parts[-1])
        if existing is not None and os.path.samestat(existing, st):
            return
        self._clear(parent, parts)
        # Clearing may have removed (and closed) the target's directory: look it up again.
        target_parent = self._dir(target[:-1], shown, create=False, missing=missing)
        os.link(target[-1], parts[-1], src_dir_fd=target_parent, dst_dir_fd=parent, follow_symlinks=False)

    def _set_owner_mode(self, fd: int, entry: TarEntry) -> None:
        os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, entry.mode & 0o7777)

    def _set_xattrs(self, fd: int, entry: TarEntry) -> None:
        for name, value in entry.xattrs.items():
            if not wanted_xattr(name):
                continue
            try:
                os.setxattr(fd, name, value)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise  # the filesystem lacks xattrs: drop them, as Docker does

    def _clear(self, parent: int, parts: tuple[bytes, ...]) -> None:
        """Remove whatever an earlier entry left at ``parts``; later entries replace earlier ones."""
        leaf = parts[-1]
        st = _lstat(parent, leaf)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            for key in [k for k in self._dirs if k[: len(parts)] == parts]:
                os.close(self._dirs.pop(key))
            for key in [k for k in self._dir_times if k[: len(parts)] == parts]:
                del self._dir_times[key]
            shutil.rmtree(leaf, dir_fd=parent)
        else:
            os.unlink(leaf, dir_fd=parent)

    def _dir(self, parts: tuple[bytes, ...], entry: str, *, create: bool, missing: str = "") -> int:
        """An fd of directory ``parts``, each component opened with O_NOFOLLOW from its parent's fd."""
        if not parts:
            return self._root
        cached = self._dirs.get(parts)
        if cached is not None:
            self._dirs.move_to_end(parts)
            return cached
        parent = self._dir(parts[:-1], entry, create=create, missing=missing)
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                what = missing or "/".join(p.decode("utf-8", "backslashreplace") for p in parts)
                raise BadImage(f"{self._label}: {entry}: {what} is not in this layer") from None
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = _lstat(parent, name)
            path = "/".join(p.decode("utf-8", "backslashreplace") for p in parts)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise BadImage(f"{self._label}: {entry}: parent {path} is a symlink (not followed)") from None
            raise BadImage(f"{self._label}: {entry}: parent {path} is not a directory") from None
        self._dirs[parts] = fd
        return fd

    def _trim(self) -> None:
        """Fds from _dir() stay open for the whole entry (only _clear closes those it removes)."""
        while len(self._dirs) > _DIR_CACHE:
            os.close(self._dirs.popitem(last=False)[1])

    def _forget_dirs(self) -> None:
        while self._dirs:
            _, fd = self._dirs.popitem()
            os.close(fd)


def _lstat(parent: int, leaf: bytes) -> os.stat_result | None:
    try:
        return os.lstat(leaf, dir_fd=parent)
    except FileNotFoundError:
        return None
