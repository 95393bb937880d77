"""Engine and session factory. Opening the database applies every pending migration, so a fresh data
directory and an old one both come up at the current schema; a default project always exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from atoll.model.clock import utcnow
from atoll.store.models import DEFAULT_PROJECT, ProjectRow

MIGRATIONS = Path(__file__).parent / "migrations"

SQLITE_BUSY_TIMEOUT_MS = 5000
"""Long enough to ride out a checkpoint or a concurrent writer, short enough to surface a stuck lock."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cur.close()


def create_db_engine(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        _owner_only(Path(u.database))
        engine = create_engine(url, connect_args={"check_same_thread": False})
    else:
        # One shared connection, or every connection would see its own empty database.
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _owner_only(db: Path) -> None:
    """The database holds registry credentials: only its owner may read it (or its WAL and shm files,
    which SQLite creates with the database's mode)."""
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path == db:
            path.touch(mode=0o600, exist_ok=True)
        if path.exists():
            path.chmod(0o600)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def ensure_default_project(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        if s.scalar(select(ProjectRow).where(ProjectRow.name == DEFAULT_PROJECT)) is None:
            s.add(ProjectRow(name=DEFAULT_PROJECT, created_at=utcnow()))


def open_database(url: str) -> sessionmaker[Session]:
    engine = create_db_engine(url)
    migrate(engine)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    ensure_default_project(sessions)
    return sessions
