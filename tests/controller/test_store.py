from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, select, text
from sqlalchemy.orm import Session, sessionmaker

from atoll.store.db import alembic_config, open_database
from atoll.store.models import DEFAULT_PROJECT, Base, ProjectRow


def _diff(sessions: sessionmaker[Session], metadata: MetaData) -> list[object]:
    with sessions() as s:
        ctx = MigrationContext.configure(s.connection(), opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))


def test_migrated_schema_equals_the_models(sessions: sessionmaker[Session]) -> None:
    assert _diff(sessions, Base.metadata) == []


def test_the_comparison_would_notice_a_difference(sessions: sessionmaker[Session]) -> None:
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    Table("extra", changed, Column("id", Integer, primary_key=True))
    assert _diff(sessions, changed)


def test_opening_twice_keeps_data_and_one_default_project(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'atoll.db'}"
    first = open_database(url)
    with first.begin() as s:
        s.add(ProjectRow(name="other", created_at="2024-01-01T00:00:00Z"))
    second = open_database(url)
    with second() as s:
        names = list(s.scalars(select(ProjectRow.name).order_by(ProjectRow.name)))
        assert names == [DEFAULT_PROJECT, "other"]
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert s.scalar(text("select version_num from alembic_version")) == head


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with open_database(f"sqlite:///{tmp_path / 'atoll.db'}")() as s:
        assert s.scalar(text("pragma journal_mode")) == "wal"
        assert s.scalar(text("pragma foreign_keys")) == 1
        assert s.scalar(text("pragma synchronous")) == 1  # NORMAL
        assert s.scalar(text("pragma busy_timeout")) == 5000


def test_in_memory_database_works() -> None:
    sessions = open_database("sqlite://")
    with sessions() as s:
        assert s.get(ProjectRow, DEFAULT_PROJECT) is not None
