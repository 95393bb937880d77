"""Path lookups inside an image's root filesystem, as if it were ``/``.

Images are untrusted: ``/etc/passwd`` may be a symlink to ``/../../../etc/shadow`` or to the host's
``/proc/self/root``. Every lookup here therefore walks the path one component at a time with file
descriptors (``O_PATH | O_NOFOLLOW`` relative to the directory reached so far), reading each symlink
itself and resolving it against the image root: absolute targets restart at the root and ``..`` stops
at the root. Because the walk holds descriptors rather than re-resolving strings, a running container
that swaps a directory for a symlink halfway through cannot send it outside either.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

MAX_SYMLINKS = 40  # as the kernel's MAXSYMLINKS

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


@dataclass
class _Walk:
    """Where a walk ended. Descriptors are valid only inside ``_walk``'s context."""

    root_fd: int
    dirs: list[tuple[str, int]] = field(default_factory=list)  # directories entered below the root
    tail: list[str] = field(default_factory=list)  # components past the last one that exists
    leaf: str | None = None  # the last component when it exists and is not a directory
    leaf_stat: os.stat_result | None = None

    @property
    def dir_fd(self) -> int:
        return self.dirs[-1][1] if self.dirs else self.root_fd

    @property
    def parts(self) -> list[str]:
        names = [name for name, _ in self.dirs]
        if self.leaf is not None:
            names.append(self.leaf)
        return names + self.tail

    def pop(self) -> None:
        if self.dirs:
            os.close(self.dirs.pop()[1])

    def reset(self) -> None:
        while self.dirs:
            self.pop()


@contextmanager
def _walk(root: Path, path: str) -> Iterator[_Walk]:
    # The root itself is ours and may be a link (``/proc/<pid>/root``): follow it.
    walk = _Walk(os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        pending = deque(_split(path))
        hops = 0
        while pending:
            name = pending.popleft()
            if name == "..":
                if walk.tail:
                    walk.tail.pop()
                elif walk.leaf is not None:
                    walk.leaf = walk.leaf_stat = None
                else:
                    walk.pop()
                continue
            if walk.tail or walk.leaf is not None:
                # Below something missing or below a file: nothing exists, keep the name as written.
                if walk.leaf is not None:
                    walk.tail.append(walk.leaf)
                    walk.leaf = walk.leaf_stat = None
                walk.tail.append(name)
                continue
            try:
                st = os.stat(name, dir_fd=walk.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                walk.tail.append(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=walk.dir_fd)
                if target.startswith("/"):
                    walk.reset()
                pending.extendleft(reversed(_split(target)))
            elif stat.S_ISDIR(st.st_mode):
                walk.dirs.append((name, os.open(name, _DIR_FLAGS, dir_fd=walk.dir_fd)))
            else:
                walk.leaf, walk.leaf_stat = name, st
        yield walk
    finally:
        walk.reset()
        os.close(walk.root_fd)


def resolve_in_root(root: Path, path: str) -> Path:
    """The host path that ``path`` names inside ``root``, symlinks followed, never outside ``root``.

    Components that do not exist are kept as written (``..`` among them still clamped at the root).
    Raises ``OSError(ELOOP)`` after more than 40 symlinks.
    """
    with _walk(root, path) as walk:
        return root.joinpath(*walk.parts)


def read_file_in_root(root: Path, path: str, limit: int = 1 << 20) -> bytes | None:
    """The first ``limit`` bytes of a regular file inside ``root``; None if it is missing or not a file."""
    try:
        with _walk(root, path) as walk:
            if walk.leaf is None:
                return None
            fd = os.open(
                walk.leaf,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                dir_fd=walk.dir_fd,
            )
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return None
                chunks: list[bytes] = []
                size = 0
                while size < limit:
                    chunk = os.read(fd, min(limit - size, 1 << 16))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                return b"".join(chunks)
            finally:
                os.close(fd)
    except OSError:
        return None


def _is_executable(root: Path, path: str) -> bool:
    try:
        with _walk(root, path) as walk:
            st = walk.leaf_stat
            return st is not None and stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)
    except OSError:
        return False


def find_executable(root: Path, name: str, path_env: str, cwd: str = "/") -> str | None:
    """Where ``execvp(name)`` would find its program inside ``root``, as a path in the container.

    Used to refuse a start with a clear "executable not found" instead of a container that dies at once.
    A name with a slash is taken as a path (relative to ``cwd``); otherwise each ``PATH`` entry is
    tried in order, an empty entry meaning ``cwd``, as execvp does.
    """
    if not name:
        return None
    if "/" in name:
        full = name if name.startswith("/") else f"{cwd.rstrip('/')}/{name}"
        return name if _is_executable(root, full) else None
    for entry in path_env.split(":"):
        directory = entry or cwd
        if not directory.startswith("/"):
            directory = f"{cwd.rstrip('/')}/{directory}"
        candidate = f"{directory.rstrip('/')}/{name}"
        if _is_executable(root, candidate):
            return candidate
    return None
