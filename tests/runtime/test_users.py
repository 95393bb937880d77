"""user[:group] resolved in the image's own account files."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.agent.runtime.users import ResolvedUser, resolve_user
from atoll.model.errors import InvalidInput

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1::/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:app:/home/app:/bin/sh
# a comment
broken line
"""
GROUP = """\
root:x:0:root
daemon:x:1:
app:x:1000:
extra:x:2000:app,other
more:x:3000:other,app
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", ResolvedUser(0, 0, [0], "/root")),
        ("root", ResolvedUser(0, 0, [0], "/root")),
        ("app", ResolvedUser(1000, 1000, [2000, 3000], "/home/app")),
        ("1000", ResolvedUser(1000, 1000, [2000, 3000], "/home/app")),
        ("app:extra", ResolvedUser(1000, 2000, [], "/home/app")),
        ("app:5", ResolvedUser(1000, 5, [], "/home/app")),
        ("1000:more", ResolvedUser(1000, 3000, [], "/home/app")),
        ("4242", ResolvedUser(4242, 0, [], "/")),
        ("4242:4243", ResolvedUser(4242, 4243, [], "/")),
        ("daemon", ResolvedUser(1, 1, [], "/usr/sbin")),
    ],
)
def test_resolution(rootfs: Path, spec: str, expected: ResolvedUser) -> None:
    assert resolve_user(rootfs, spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bob", 'user: no user "bob" in the image\'s /etc/passwd'),
        ("app:nogroup", 'user: no group "nogroup" in the image\'s /etc/group'),
        ("99999999999", "out of range"),
        ("-1", "out of range"),
        (":1000", "names no user"),
        ("app:", "names no group"),
    ],
)
def test_errors_name_the_field(rootfs: Path, spec: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        resolve_user(rootfs, spec)
    assert message in err.value.message
    assert err.value.message.startswith("user: ")


def test_image_without_account_files(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "") == ResolvedUser(0, 0, [], "/")
    assert resolve_user(tmp_path, "123:456") == ResolvedUser(123, 456, [], "/")
    with pytest.raises(InvalidInput):
        resolve_user(tmp_path, "app")


def test_hostile_passwd_symlink_is_not_followed_out(tmp_path: Path) -> None:
    (tmp_path / "host-passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("../../host-passwd")
    with pytest.raises(InvalidInput, match="no user"):
        resolve_user(root, "evil")
