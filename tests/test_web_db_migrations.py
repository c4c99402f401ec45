"""Alembic migrations on SQLite and PostgreSQL: upgrade, downgrade, and agreement with the ORM models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
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


def test_0003_chains_double_finals_before_enforcing_one_final(fresh_db_url: str) -> None:  # noqa: F811
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    downgrade_database(fresh_db_url, "0002")
    engine = make_engine(fresh_db_url)
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    insert_diagnosis = text(
        "INSERT INTO diagnoses (id, study_id, kind, label, notes, signed_by_id, signed_at, amends_id, "
        "amendment_reason) VALUES (:id, 1, :kind, 'normal', '', 1, :now, :amends, :reason)"
    )
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO users (id, username, password_hash, role, active, created_at) "
                     "VALUES (1, 'rad', 'x', 'radiologist', true, :now)"), {"now": now}
            )  # fmt: skip
            connection.execute(
                text("INSERT INTO patients (id, patient_key, created_at) VALUES (1, 'k', :now)"), {"now": now}
            )
            connection.execute(
                text("INSERT INTO studies (id, patient_id, status, created_at) VALUES (1, 1, 'done', :now)"),
                {"now": now},
            )
            # What the race stored before 0003: two finals, then two amendments of the first.
            for row in (
                {"id": 1, "kind": "final", "amends": None, "reason": None},
                {"id": 2, "kind": "final", "amends": None, "reason": None},
                {"id": 3, "kind": "amendment", "amends": 1, "reason": "typo"},
                {"id": 4, "kind": "amendment", "amends": 1, "reason": "second look"},
            ):
                connection.execute(insert_diagnosis, {**row, "now": now})
        upgrade_database(fresh_db_url)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id, kind, amends_id, amendment_reason FROM diagnoses ORDER BY id")
            ).all()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (1, "final", None),
            (2, "amendment", 1),
            (3, "amendment", 2),
            (4, "amendment", 3),
        ]
        assert "migration 0003" in rows[1][3] and rows[2][3] == "typo" and rows[3][3] == "second look"
        # Now the database itself refuses a second final and a second amendment of one diagnosis.
        for row in (
            {"id": 5, "kind": "final", "amends": None, "reason": None},
            {"id": 6, "kind": "amendment", "amends": 4, "reason": "a"},
        ):
            if row["kind"] == "amendment":
                with engine.begin() as connection:
                    connection.execute(insert_diagnosis, {**row, "now": now})
                row = {**row, "id": 7}
            with pytest.raises(IntegrityError), engine.begin() as connection:
                connection.execute(insert_diagnosis, {**row, "now": now})
        downgrade_database(fresh_db_url, "0002")
        assert {"uq_diagnoses_one_final_per_study", "uq_diagnoses_amends_id"}.isdisjoint(
            {index["name"] for index in inspect(engine).get_indexes("diagnoses")}
        )
    finally:
        engine.dispose()
