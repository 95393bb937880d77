"""Registry passwords at rest: encrypted in the database, the key in a 0600 file, old rows sealed."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from atoll.model.errors import RuntimeFailure
from atoll.services.context import Controller
from atoll.services.registry import credentials
from atoll.services.secrets import KEY_FILE, SecretBox, box_for, seal_stored
from atoll.store.models import RegistryCredentialRow

from .factories import P, error_of
from .fakes import FakeAgent

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-Pa55word-xyzzy"


def raw_rows(tmp_path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(tmp_path / "atoll.db") as db:
        return list(db.execute("SELECT registry, username, secret FROM registry_credentials"))


async def test_a_login_is_stored_encrypted_and_still_used(
    client: httpx.AsyncClient, ctl: Controller, agent: FakeAgent, tmp_path: Path
) -> None:
    body = {"registry": "reg.example:5000", "username": "alice", "password": PASSWORD}
    assert (await client.post(f"{P}/registry-logins", json=body)).status_code in (200, 201)
    [(host, user, secret)] = raw_rows(tmp_path)
    assert (host, user) == ("reg.example:5000", "alice")
    assert PASSWORD not in secret and secret.startswith("fernet:")
    assert PASSWORD.encode() not in (tmp_path / "atoll.db").read_bytes()
    key = tmp_path / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # What a pull hands the agent is the real password again.
    await client.post(f"{P}/images/pull", json={"reference": "reg.example:5000/team/app:1"})
    [(_, creds)] = agent.called("pull_image")
    assert creds["reg.example:5000"].secret == PASSWORD
    assert PASSWORD not in (await client.get(f"{P}/registry-logins")).text


async def test_rows_from_before_encryption_are_sealed(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as s:
        s.add(
            RegistryCredentialRow(
                project="default", host="old.example", username="bob", secret=PASSWORD, created_at="x"
            )
        )
    box = SecretBox.in_dir(tmp_path)
    with sessions() as s:  # a plain row reads as it is until sealed
        assert credentials(s, "default", box, "old.example")["old.example"].secret == PASSWORD
    assert seal_stored(sessions, box) == 1
    assert seal_stored(sessions, box) == 0
    [(_, _, secret)] = raw_rows(tmp_path)
    assert secret.startswith("fernet:") and PASSWORD not in secret
    with sessions() as s:
        assert credentials(s, "default", SecretBox.in_dir(tmp_path), "x")["old.example"].secret == PASSWORD


async def test_a_missing_key_is_a_clear_error_for_that_registry_only(
    client: httpx.AsyncClient, ctl: Controller, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    for registry in ("reg.example:5000", "other.example"):
        body = {"registry": registry, "username": "alice", "password": PASSWORD}
        assert (await client.post(f"{P}/registry-logins", json=body)).status_code in (200, 201)
    (tmp_path / KEY_FILE).unlink()
    box = box_for(sessions, None)
    with sessions() as s:
        with pytest.raises(RuntimeFailure, match=f"key file {tmp_path / KEY_FILE}, which is missing"):
            credentials(s, "default", box, "reg.example:5000")
        assert credentials(s, "default", box, "third.example") == {}  # unusable logins left out
    err = error_of(await client.post(f"{P}/images/pull", json={"reference": "reg.example:5000/a:1"}), 500)
    assert "missing" in err["message"] and PASSWORD not in err["message"]
    # Logging in again seals the new password with a new key; the other login stays unreadable.
    body = {"registry": "reg.example:5000", "username": "alice", "password": PASSWORD + "2"}
    assert (await client.post(f"{P}/registry-logins", json=body)).status_code in (200, 201)
    with sessions() as s:
        creds = credentials(s, "default", box_for(sessions, None), "reg.example:5000")
    assert creds["reg.example:5000"].secret == PASSWORD + "2" and "other.example" not in creds
