"""Alembic migrations on SQLite and PostgreSQL: upgrade, downgrade, and agreement with the ORM models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from web_support import db_url, fresh_db_url  # noqa: F401

from app.web.core.db import Base, make_engine, make_session_factory
from app.web.core.migrations import current_revision, downgrade_database, head_revision, upgrade_database
from app.web.core.models import AuditEvent


def test_upgrade_downgrade_upgrade_round_trip(fresh_db_url: str) -> None:  # noqa: F811
    assert current_revision(fresh_db_url) == head_revision(fresh_db_url)
    downgrade_database(fresh_db_url, "base")
    engine = make_engine(fresh_db_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert current_revision(fresh_db_url) is None
        upgrade_database(fresh_db_url)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        assert current_revision(fresh_db_url) == head_revision(fresh_db_url)
        # The migrations build exactly the schema the models describe.
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_datetimes_come_back_timezone_aware_utc(db_url: str) -> None:  # noqa: F811
    engine = make_engine(db_url)
    try:
        at = datetime(2026, 3, 14, 10, 0, tzinfo=timezone(timedelta(hours=2)))
        with make_session_factory(engine)() as db:
            event = AuditEvent(action="test.tz", at=at, detail={"x": [1, 2]})
            db.add(event)
            db.commit()
            event_id = event.id
        with make_session_factory(engine)() as db:
            loaded = db.get(AuditEvent, event_id)
            assert loaded is not None
            assert loaded.at == at and loaded.at.tzinfo is not None and loaded.at.utcoffset() == timedelta(0)
            assert loaded.at.astimezone(UTC).hour == 8 and loaded.detail == {"x": [1, 2]}
            db.delete(loaded)
            db.commit()
    finally:
        engine.dispose()
