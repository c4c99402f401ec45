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


def test_0002_fills_the_counts_of_verdicts_stored_before_it(fresh_db_url: str) -> None:  # noqa: F811
    from sqlalchemy import text

    downgrade_database(fresh_db_url, "0001")
    engine = make_engine(fresh_db_url)
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO patients (id, patient_key, created_at) VALUES (1, 'k', :now)"), {"now": now}
            )
            connection.execute(
                text("INSERT INTO studies (id, patient_id, status, created_at) VALUES (1, 1, 'done', :now)"),
                {"now": now},
            )
            connection.execute(
                text(
                    "INSERT INTO analyses (id, study_id, status, timings, created_at) "
                    "VALUES (1, 1, 'done', '{}', :now)"
                ),
                {"now": now},
            )
            connection.execute(
                text(
                    "INSERT INTO verdicts (id, analysis_id, label, probabilities, aggregation, support, "
                    "n_used, n_excluded) VALUES (1, 1, 'normal', '{}', 'mean', '[]', 3, 2)"
                )
            )
        upgrade_database(fresh_db_url)
        with engine.connect() as connection:
            row = connection.execute(text("SELECT n_total, excluded_by_reason FROM verdicts")).one()
        # n_total is what the old row counted; its reasons were never kept.
        assert row[0] == 5 and row[1] in ({}, "{}")
        downgrade_database(fresh_db_url, "0001")
        assert "n_total" not in {c["name"] for c in inspect(engine).get_columns("verdicts")}
    finally:
        engine.dispose()
