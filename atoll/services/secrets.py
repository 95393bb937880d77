"""Registry passwords encrypted at rest: Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``).

The database holds ``fernet:<token>`` in ``registry_credentials.secret``; the key lives apart from it,
in a file under the controller's data directory (``registry-secrets.key``), created mode 0600 on first
use. So a copy of the database (a backup, a dump, a leaked file) reveals no password; only someone who
can also read the key file can. Rows written before encryption existed hold the plain password: they
are sealed when the controller starts (:func:`seal_stored`) and read as they are until then.

If the key file is lost while sealed rows exist, nothing is guessed and no new key silently replaces
it for those rows: using one of them fails with an error that names the file and says what to do
(restore it, or log in again, which seals the new password with a new key). Secrets never appear in
errors or logs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from atoll.model.errors import RuntimeFailure
from atoll.store.models import RegistryCredentialRow

PREFIX = "fernet:"
KEY_FILE = "registry-secrets.key"


class SecretBox:
    """Seals and opens secrets with the key in ``path`` (made on the first seal)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fernet: Fernet | None = None

    @classmethod
    def in_dir(cls, data_dir: Path) -> SecretBox:
        return cls(data_dir / KEY_FILE)

    def seal(self, plain: str) -> str:
        return PREFIX + self._key(create=True).encrypt(plain.encode()).decode()

    def open(self, stored: str, what: str) -> str:
        """The secret in ``stored`` (a sealed token, or a plain one from before encryption)."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            fernet = self._key(create=False)
        except FileNotFoundError:
            raise RuntimeFailure(
                f"{what}: the stored password is encrypted with the key file {self.path}, which is "
                "missing: restore that file, or log in again"
            ) from None
        try:
            return fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise RuntimeFailure(
                f"{what}: the stored password does not open with the key file {self.path} (was it "
                "replaced?): restore the old file, or log in again"
            ) from None

    def _key(self, *, create: bool) -> Fernet:
        if self._fernet is None:
            try:
                key = self.path.read_bytes().strip()
            except FileNotFoundError:
                if not create:
                    raise
                key = _create_key(self.path)
            self._fernet = Fernet(key)
        return self._fernet


def _create_key(path: Path) -> bytes:
    """A new key, written 0600 and synced; if another process made one first, that one."""
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replaces a key someone else made meanwhile
    except FileExistsError:
        key = path.read_bytes().strip()
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return key


def box_for(sessions: sessionmaker[Session], configured: SecretBox | None) -> SecretBox:
    """The controller's box; without one configured, a key beside the SQLite database file."""
    if configured is not None:
        return configured
    bind = sessions.kw.get("bind")
    database = getattr(getattr(bind, "url", None), "database", None)
    if not database or database == ":memory:":
        raise RuntimeFailure("registry logins need a key file: no data directory is configured")
    return SecretBox.in_dir(Path(database).parent)


def seal_stored(sessions: sessionmaker[Session], box: SecretBox) -> int:
    """Encrypt the passwords stored before encryption existed; returns how many were sealed."""
    with sessions.begin() as s:
        rows = [row for row in s.scalars(select(RegistryCredentialRow)) if not row.secret.startswith(PREFIX)]
        for row in rows:
            row.secret = box.seal(row.secret)
        return len(rows)
