"""Lookups inside an untrusted root filesystem never leave it, whatever its symlinks say."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from atoll.agent.runtime.rootpath import find_executable, read_file_in_root, resolve_in_root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root with hostile links, next to a "host" secret that must stay out of reach."""
    (tmp_path / "secret").write_text("host secret\n")
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "bin").mkdir()
    (r / "usr" / "bin").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "etc" / "secret").write_text("image secret\n")
    (r / "bin" / "tool").write_text("#!/bin/sh\n")
    (r / "bin" / "tool").chmod(0o755)
    (r / "bin" / "data").write_text("not executable\n")
    (r / "abs").symlink_to("/etc")  # absolute: means the image's /etc
    (r / "up").symlink_to("../../../../..")  # climbs above the root
    (r / "escape").symlink_to("../secret")  # the host's secret, next to root
    (r / "etc" / "shadow").symlink_to("/../../secret")
    (r / "loop1").symlink_to("loop2")
    (r / "loop2").symlink_to("loop1")
    (r / "usr" / "bin" / "tool2").symlink_to("../../bin/tool")
    os.mkfifo(r / "fifo")
    return r


def test_resolution_is_clamped_at_the_root(root: Path) -> None:
    assert resolve_in_root(root, "/etc/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "etc/../../../etc/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/abs/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/up/etc/secret") == root / "etc" / "secret"
    assert resolve_in_root(root, "/escape") == root / "secret"
    assert resolve_in_root(root, "/etc/shadow") == root / "secret"
    assert resolve_in_root(root, "/") == root
    assert resolve_in_root(root, "/usr/bin/tool2") == root / "bin" / "tool"


def test_missing_components_are_kept_but_dotdot_still_clamps(root: Path) -> None:
    assert resolve_in_root(root, "/nope/x") == root / "nope" / "x"
    assert resolve_in_root(root, "/nope/../../../abs/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/etc/passwd/..") == root / "etc"


def test_symlink_loops(root: Path) -> None:
    with pytest.raises(OSError) as err:
        resolve_in_root(root, "/loop1")
    assert err.value.errno == errno.ELOOP
    assert read_file_in_root(root, "/loop1") is None


def test_read_file_stays_inside(root: Path) -> None:
    assert read_file_in_root(root, "/etc/passwd") == b"root:x:0:0::/root:/bin/sh\n"
    assert read_file_in_root(root, "/escape") is None
    assert read_file_in_root(root, "/etc/shadow") is None
    assert read_file_in_root(root, "/up/secret") is None
    assert read_file_in_root(root, "/etc") is None
    assert read_file_in_root(root, "/fifo") is None  # and it does not hang
    assert read_file_in_root(root, "/etc/passwd", limit=4) == b"root"


def test_find_executable(root: Path) -> None:
    path = "/usr/bin:/bin"
    assert find_executable(root, "tool", path) == "/bin/tool"
    assert find_executable(root, "tool2", path) == "/usr/bin/tool2"
    assert find_executable(root, "data", path) is None
    assert find_executable(root, "nope", path) is None
    assert find_executable(root, "/bin/tool", "") == "/bin/tool"
    assert find_executable(root, "./tool", "", cwd="/bin") == "./tool"
    assert find_executable(root, "tool", ":/usr/bin", cwd="/bin") == "/bin/tool"
    assert find_executable(root, "", path) is None
    # The host's /bin/sh is not the image's.
    assert find_executable(root, "sh", path) is None
