"""C-STORE push of result objects (SR, SC heatmaps, Encapsulated PDF) to the configured PACS.

A thread of the server process. It notices studies whose results changed (a finished analysis,
a new signed read: ``case_revision``), records a pending push per (study, PACS, revision) in
``dicom_pushes`` (the database's unique key keeps two server processes from both recording it),
and sends each when due. A failed attempt is retried after PUSH_RETRY_BASE_S·2^(n−1) seconds,
up to PUSH_MAX_ATTEMPTS, then the push is marked failed; the case page shows the state.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from datetime import timedelta

import pydicom
from pynetdicom import AE
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from app.web.core.db import utcnow
from app.web.core.models import Analysis, DicomPush, Image, Study
from app.web.dicom.case_record import case_revision, load_case_record
from app.web.dicom.results import (
    COMPREHENSIVE_SR_STORAGE,
    ENCAPSULATED_PDF_STORAGE,
    SECONDARY_CAPTURE_STORAGE,
    result_instances,
)
from app.web.runtime import Runtime
from app.web.services.audit import record_event

log = logging.getLogger(__name__)

# C-STORE statuses that mean "stored" (PS3.4 B.2.3): success and the warnings.
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class PushFailed(Exception):
    """One attempt failed; the message holds DIMSE words, never patient data."""


def destination(settings: object) -> str:
    return f"{settings.pacs_ae_title}@{settings.pacs_host}:{settings.pacs_port}"  # type: ignore[attr-defined]


def send(
    instances: list[bytes], host: str, port: int, called: str, calling: str, timeout_s: float = 30.0
) -> int:
    """C-STORE every instance in one association; returns how many were stored."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class in (COMPREHENSIVE_SR_STORAGE, SECONDARY_CAPTURE_STORAGE, ENCAPSULATED_PDF_STORAGE):
        ae.add_requested_context(sop_class, "1.2.840.10008.1.2.1")
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        # pynetdicom reports a refused connection as an abort too.
        what = "rejected" if assoc.is_rejected else "not reachable, or it aborted the association"
        raise PushFailed(f"the PACS was {what}")
    stored = 0
    try:
        for data in instances:
            status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(data)))
            code = int(status.Status) if "Status" in status else None
            if code not in _STORED:
                raise PushFailed(
                    "no answer to a C-STORE"
                    if code is None
                    else f"the PACS answered C-STORE status 0x{code:04X}"
                )
            stored += 1
    finally:
        assoc.release()
    return stored


class ResultPusher:
    def __init__(self, runtime: Runtime, banner: Callable[[], str | None]) -> None:
        self.runtime = runtime
        self.banner = banner
        self.destination = destination(runtime.settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dicom-pusher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # keep pushing later; the message may quote SQL values
                log.error("the result pusher failed (%s); it tries again", type(exc).__name__)
            self._stop.wait(self.runtime.settings.push_poll_s)

    def run_once(self) -> int:
        """Record pushes for changed results, then attempt the due ones; returns attempts made."""
        self.discover()
        attempts = 0
        for push_id in self._due():
            self.attempt(push_id)
            attempts += 1
        return attempts

    def discover(self) -> None:
        latest = (
            select(func.max(Analysis.id))
            .where(Analysis.study_id == Study.id)
            .correlate(Study)
            .scalar_subquery()
        )
        with self.runtime.session_factory() as db:
            rows = db.execute(
                select(Study.id, Analysis.id)
                .join(Analysis, Analysis.id == latest)
                .where(
                    Study.study_uid.is_not(None),
                    Analysis.status == "done",
                    exists().where(Image.study_id == Study.id, Image.source_key.is_not(None)),
                )
            ).all()
            for study_id, analysis_id in rows:
                revision = case_revision(db, analysis_id, study_id)
                known = db.scalar(
                    select(DicomPush.id).where(
                        DicomPush.study_id == study_id,
                        DicomPush.destination == self.destination,
                        DicomPush.revision == revision,
                    )
                )
                if known is not None:
                    continue
                db.add(
                    DicomPush(
                        study_id=study_id,
                        destination=self.destination,
                        revision=revision,
                        status="pending",
                        attempts=0,
                        n_instances=0,
                        next_attempt_at=utcnow(),
                    )
                )
                try:
                    db.commit()
                except IntegrityError:
                    db.rollback()  # another server process recorded it first

    def _due(self) -> list[int]:
        with self.runtime.session_factory() as db:
            return list(
                db.scalars(
                    select(DicomPush.id)
                    .where(
                        DicomPush.status == "pending",
                        DicomPush.destination == self.destination,
                        DicomPush.next_attempt_at <= utcnow(),
                    )
                    .order_by(DicomPush.next_attempt_at)
                )
            )

    def attempt(self, push_id: int) -> None:
        settings = self.runtime.settings
        with self.runtime.session_factory() as db:
            push = db.get(DicomPush, push_id)
            if push is None or push.status != "pending":
                return
            study = db.get(Study, push.study_id)
            record = load_case_record(db, self.runtime.store, study, None, "concurrent") if study else None
            error = None
            if record is None or record.revision != push.revision:
                # A newer analysis or read replaced this content; its own push sends it.
                push.status, push.last_error, push.next_attempt_at = (
                    "failed",
                    "superseded by newer results",
                    None,
                )
                db.commit()
                return
            try:
                instances = [
                    entry.load() for entry in result_instances(record, self.runtime.store, self.banner())
                ]
                push.n_instances = send(
                    instances,
                    settings.pacs_host,
                    settings.pacs_port,
                    settings.pacs_ae_title,
                    settings.dicom_ae_title,
                )
            except PushFailed as exc:
                error = str(exc)
            except Exception as exc:  # building or sending: only the type, never the message
                error = f"the push failed ({type(exc).__name__})"
            push.attempts += 1
            if error is None:
                push.status, push.sent_at, push.next_attempt_at, push.last_error = (
                    "sent",
                    utcnow(),
                    None,
                    None,
                )
                record_event(
                    db,
                    None,
                    "study.results_pushed",
                    study_id=push.study_id,
                    destination=self.destination,
                    n_instances=push.n_instances,
                )
            elif push.attempts >= settings.push_max_attempts:
                push.status, push.last_error, push.next_attempt_at = "failed", error, None
                record_event(
                    db,
                    None,
                    "study.results_push_failed",
                    study_id=push.study_id,
                    destination=self.destination,
                    attempts=push.attempts,
                )
            else:
                push.last_error = error
                delay = settings.push_retry_base_s * 2 ** (push.attempts - 1)
                push.next_attempt_at = utcnow() + timedelta(seconds=delay)
            study_id, attempts = push.study_id, push.attempts
            db.commit()
        if error:
            log.warning("pushing the results of study %d failed (attempt %d): %s", study_id, attempts, error)
