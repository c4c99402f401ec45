"""Leases on running analyses (issue 13): a worker or server starting while another analyses
changes nothing; an expired lease is taken again; a duplicated or stale delivery writes nothing.

On SQLite and PostgreSQL, with the real worker and the real tiny model. "Another worker holds
the lease" is a claim written by ``leases.claim`` for an owner that is not renewing it, exactly
what a worker that died mid-analysis leaves behind (the multi-process tests, with real killed
worker processes, are in tests/test_worker_processes.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select, update
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.db import utcnow
from app.web.core.models import Analysis, ImagePredictionRow, VerdictRow
from app.web.services import leases
from app.web.services.analysis_worker import AnalysisWorker

pytestmark = pytest.mark.slow

DEAD_OWNER = "dead-host:1:00000000"


def _analysis(h: Any) -> Analysis:
    with h.runtime.session_factory() as db:
        analysis = db.scalar(select(Analysis).order_by(Analysis.id.desc()).limit(1))
        assert analysis is not None
        return analysis


def _rows(h: Any, analysis_id: int) -> tuple[int, int]:
    with h.runtime.session_factory() as db:
        predictions = db.scalar(
            select(func.count())
            .select_from(ImagePredictionRow)
            .where(ImagePredictionRow.analysis_id == analysis_id)
        )
        verdicts = db.scalar(
            select(func.count()).select_from(VerdictRow).where(VerdictRow.analysis_id == analysis_id)
        )
    return int(predictions or 0), int(verdicts or 0)


def _claim_for(h: Any, analysis_id: int, owner: str, lease_s: float) -> None:
    with h.runtime.session_factory() as db:
        assert leases.claim(db, analysis_id, owner, lease_s)


def _wait(predicate: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_worker_started_while_another_holds_the_lease_changes_nothing_until_it_expires(
    web,  # noqa: F811
    db_url: str,  # noqa: F811
) -> None:
    h = web(worker_enabled=False, worker_lease_s=2.0)
    study_id = h.upload(study_files(2)).json()["study_id"]
    analysis_id = _analysis(h).id
    # Another worker is mid-analysis: its lease is live for 30 s.
    _claim_for(h, analysis_id, DEAD_OWNER, lease_s=30.0)

    second = AnalysisWorker(h.runtime)
    second.start()
    try:
        time.sleep(1.5)  # several polls (worker_poll_s = 0.2)
        held = _analysis(h)
        assert (held.status, held.lease_owner, held.attempts) == ("running", DEAD_OWNER, 1)
        assert _rows(h, analysis_id) == (0, 0)
        assert second.process(analysis_id) is True  # a delivered message for it is a no-op too
        assert _analysis(h).lease_owner == DEAD_OWNER

        # The owner died: nobody renews, the lease runs out, and the running worker takes it.
        with h.runtime.session_factory() as db:
            db.execute(update(Analysis).where(Analysis.id == analysis_id).values(lease_expires_at=utcnow()))
            db.commit()
        assert _wait(lambda: _analysis(h).status == "done")
    finally:
        second.stop()
    done = _analysis(h)
    assert done.attempts == 2 and done.lease_owner is None and done.lease_expires_at is None
    assert _rows(h, analysis_id) == (2, 1)
    assert h.wait_for(study_id)["status"] == "done"


def test_a_server_starting_mid_analysis_leaves_the_running_analysis_alone(web, db_url: str) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    h.upload(study_files(1))
    analysis_id = _analysis(h).id
    _claim_for(h, analysis_id, DEAD_OWNER, lease_s=30.0)
    # A second server process starts with its in-process worker (the old code reset "running").
    web(worker_enabled=True)
    time.sleep(1.0)
    held = _analysis(h)
    assert (held.status, held.lease_owner, held.attempts) == ("running", DEAD_OWNER, 1)
    assert _rows(h, analysis_id) == (0, 0)


def test_a_duplicated_delivery_of_a_done_analysis_writes_nothing(web, db_url: str) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    h.upload(study_files(3))
    analysis_id = _analysis(h).id
    worker = AnalysisWorker(h.runtime)
    assert worker.process(analysis_id) is True
    before = _analysis(h)
    assert (before.status, before.attempts) == ("done", 1) and _rows(h, analysis_id) == (3, 1)
    for _ in range(3):
        assert worker.process(analysis_id) is True
    after = _analysis(h)
    assert (after.status, after.attempts, after.finished_at) == ("done", 1, before.finished_at)
    assert _rows(h, analysis_id) == (3, 1)


def test_a_stale_worker_that_lost_its_lease_cannot_write_or_fail_the_study(web, db_url: str) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    study_id = h.upload(study_files(2)).json()["study_id"]
    analysis_id = _analysis(h).id
    stale = "stalled-host:2:11111111"
    _claim_for(h, analysis_id, stale, lease_s=0.001)  # it stalled past its lease
    time.sleep(0.05)
    worker = AnalysisWorker(h.runtime)
    assert worker.process(analysis_id) is True  # taken over and finished
    assert _rows(h, analysis_id) == (2, 1)

    # The stalled worker wakes and tries to write its outcome: its lease is gone.
    assert worker._save_result(analysis_id, stale, (), [], {}, None, [], {}) is False
    worker._finish_failed(analysis_id, stale, "late failure", {})
    with h.runtime.session_factory() as db:
        assert leases.hold(db, analysis_id, stale) is None
        assert leases.renew(db, analysis_id, stale, 60.0) is False
    final = _analysis(h)
    assert (final.status, final.error, final.attempts) == ("done", None, 2)
    assert _rows(h, analysis_id) == (2, 1)
    assert h.wait_for(study_id)["status"] == "done"


def test_the_heartbeat_keeps_a_long_analysis_leased(web, db_url: str) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    h.upload(study_files(1))
    analysis_id = _analysis(h).id
    owner = leases.new_owner_id()
    _claim_for(h, analysis_id, owner, lease_s=0.6)
    first_expiry = _analysis(h).lease_expires_at
    with leases.LeaseKeeper(h.runtime.session_factory, analysis_id, owner, 0.6) as keeper:
        time.sleep(1.5)  # well past the first expiry: renewed every 0.2 s
        with h.runtime.session_factory() as db:
            assert leases.expired(db) == []  # nobody may take it
        assert not keeper.lost
    assert _analysis(h).lease_expires_at > first_expiry


def test_an_analysis_whose_worker_keeps_dying_is_failed_after_the_attempts(web, db_url: str) -> None:  # noqa: F811
    h = web(worker_enabled=False, worker_max_attempts=2)
    study_id = h.upload(study_files(1)).json()["study_id"]
    analysis_id = _analysis(h).id
    for n in range(2):  # two workers died while running it
        _claim_for(h, analysis_id, f"dead:{n}:0", lease_s=0.001)
        time.sleep(0.01)
    assert AnalysisWorker(h.runtime).process(analysis_id) is True
    final = _analysis(h)
    assert final.status == "failed" and final.attempts == 3 and "stopped each time" in (final.error or "")
    assert h.wait_for(study_id)["status"] == "failed"
