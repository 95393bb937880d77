"""Controller state: SQLAlchemy models, sessions and Alembic migrations. No domain logic lives here."""
