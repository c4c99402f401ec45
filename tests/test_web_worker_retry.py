"""The analysis worker waits out a busy database instead of failing the analysis (issue 12).

The database is made busy for real: another connection holds the write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE analyses IN EXCLUSIVE MODE``), and the app's
connections give up quickly (SQLite busy timeout 0.1 s; PostgreSQL lock_timeout 100 ms), so the
worker meets "database is locked" / "lock not available" exactly as under heavy load.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import insert, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from web_support import PG_ADMIN_DSN, db_url, study_files, web  # noqa: F401

from app.web.core.db import make_engine, utcnow
from app.web.core.db_retry import is_transient, retry_transient
from app.web.core.models import Analysis, Patient
from app.web.services.analysis_worker import AnalysisWorker

pytestmark = pytest.mark.slow


def _impatient(web: Any, db_url: str) -> Any:  # noqa: F811
    """The app with connections that give up on a lock after about 0.1 s."""
    if db_url.startswith("sqlite"):
        return web(worker_enabled=False, database_busy_timeout_s=0.1)
    return web(worker_enabled=False, database_url=db_url + "?options=-c%20lock_timeout%3D100")


@contextmanager
def _write_lock(db_url: str) -> Iterator[Callable[[], None]]:  # noqa: F811
    """Hold the write lock on analyses until the yielded ``release`` is called or the block ends."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        connection: Any = sqlite3.connect(
            url.database, timeout=5, isolation_level=None, check_same_thread=False
        )
        connection.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        connection = psycopg.connect(PG_ADMIN_DSN.replace("dbname=postgres", f"dbname={url.database}"))
        connection.execute("LOCK TABLE analyses IN EXCLUSIVE MODE")
    guard = threading.Lock()
    held = [True]

    def release() -> None:
        with guard:
            if held[0]:
                connection.rollback()
                held[0] = False

    try:
        yield release
    finally:
        release()
        connection.close()


def _touch_analyses(engine: Any) -> None:
    """A write that needs the lock on analyses (and changes nothing)."""
    with engine.begin() as connection:
        connection.execute(update(Analysis).where(Analysis.id == -1).values(status="queued"))


def _status(h: Any, study_id: int) -> str:
    return h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth()).json()["status"]


def test_a_lock_released_during_the_retries_is_waited_out(web, db_url: str, caplog) -> None:  # noqa: F811
    h = _impatient(web, db_url)
    study_id = h.upload(study_files(2)).json()["study_id"]
    worker = AnalysisWorker(h.runtime)
    worker.retry_first_delay_s = 0.1  # waits 0.1, 0.2, 0.4, 0.8, 1.6 s: the lock goes after 1 s
    with caplog.at_level(logging.WARNING, logger="app.web.core.db_retry"), _write_lock(db_url) as release:
        timer = threading.Timer(1.0, release)
        timer.start()
        worker.process(_analysis_id(h))
        timer.join()
    assert _status(h, study_id) == "done"
    assert "transient database error" in caplog.text


def test_a_lock_held_past_every_retry_leaves_the_analysis_queued_not_failed(web, db_url: str) -> None:  # noqa: F811
    h = _impatient(web, db_url)
    study_id = h.upload(study_files(2)).json()["study_id"]
    analysis_id = _analysis_id(h)
    worker = AnalysisWorker(h.runtime)
    worker.retry_attempts, worker.retry_first_delay_s = 2, 0.05
    with _write_lock(db_url):
        worker.process(analysis_id)  # never raises
    assert _status(h, study_id) == "queued"
    assert worker.run_pending() == 1  # the database is free again: analysed
    assert _status(h, study_id) == "done"


def _analysis_id(h: Any) -> int:
    with h.runtime.session_factory() as db:
        return int(db.query(Analysis.id).order_by(Analysis.id.desc()).limit(1).scalar())


def test_only_transient_errors_are_retried(web, db_url: str) -> None:  # noqa: F811
    h = _impatient(web, db_url)
    engine = h.runtime.db_engine
    calls: list[int] = []

    def duplicate_patient() -> None:
        calls.append(1)
        with engine.begin() as connection:
            connection.execute(insert(Patient).values(patient_key="pt-same", created_at=utcnow()))

    duplicate_patient()
    with pytest.raises(IntegrityError) as real:
        retry_transient(duplicate_patient, "test", attempts=4, sleep=lambda _s: None)
    assert len(calls) == 2 and not is_transient(real.value)  # raised at once, not retried

    calls.clear()

    def touch() -> None:
        calls.append(1)
        _touch_analyses(engine)

    with _write_lock(db_url), pytest.raises(OperationalError) as busy:
        retry_transient(touch, "test", attempts=3, sleep=lambda _s: None)
    assert is_transient(busy.value) and len(calls) == 3


def test_a_real_postgres_deadlock_counts_as_transient(db_url: str) -> None:  # noqa: F811
    if not db_url.startswith("postgresql"):
        # SQLite has one writer at a time and cannot deadlock; its busy error is transient.
        engine = make_engine(db_url, busy_timeout_s=0.05)
        try:
            with _write_lock(db_url), pytest.raises(OperationalError) as busy:
                _touch_analyses(engine)
        finally:
            engine.dispose()
        assert is_transient(busy.value)
        return
    engine = make_engine(db_url)
    try:
        with engine.begin() as setup:
            setup.exec_driver_sql("CREATE TABLE IF NOT EXISTS deadlock_probe (id int primary key, n int)")
            setup.exec_driver_sql("INSERT INTO deadlock_probe VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING")
        first, second = engine.connect(), engine.connect()
        bump = "UPDATE deadlock_probe SET n = n + 1 WHERE id = {}"
        first.exec_driver_sql(bump.format(1))
        second.exec_driver_sql(bump.format(2))
        errors: list[BaseException] = []

        def cross(connection: Any, row: int) -> None:
            try:
                connection.exec_driver_sql(bump.format(row))
            except Exception as exc:
                errors.append(exc)
            finally:
                connection.rollback()  # the survivor's lock goes, and it finishes

        threads = [threading.Thread(target=cross, args=(c, row)) for c, row in ((first, 2), (second, 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        first.close()
        second.close()
        # PostgreSQL broke the deadlock by failing exactly one of the two.
        assert len(errors) == 1 and is_transient(errors[0]), errors
    finally:
        with engine.begin() as setup:
            setup.exec_driver_sql("DROP TABLE IF EXISTS deadlock_probe")
        engine.dispose()
