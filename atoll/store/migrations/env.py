"""Alembic environment. ``atoll.store.db.migrate`` passes its connection in ``config.attributes``; the
``alembic`` command line (with ``-x url=...``) opens its own."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from atoll.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database with -x url=...")
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()


run_online()
