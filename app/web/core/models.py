"""ORM models. Every datetime is timezone-aware UTC; JSON columns hold model outputs.

Patient names and IDs live only in ``patients``; nothing else (logs, audit
details) copies them. ``ImagePredictionRow`` and ``VerdictRow`` are the stored forms of
app.inference's ``ImagePrediction`` and ``Verdict``; the suffix keeps the two apart where
both meet (the analysis worker).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.web.core.db import Base, UTCDateTime, utcnow

ROLES = ("admin", "radiologist")
ANALYSIS_STATUSES = ("queued", "running", "done", "failed")
DIAGNOSIS_KINDS = ("preliminary", "final", "amendment")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# One name per person whatever its case (migration 0010): "Alice" and "alice" would otherwise be
# two accounts a reader could confuse in the audit trail or when assigning a case.
USERNAME_LOWER_INDEX = "uq_users_username_lower"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="radiologist")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


Index(USERNAME_LOWER_INDEX, func.lower(User.username), unique=True)


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stable, non-identifying key (a hash) used to match later studies of the same patient.
    patient_key: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    # IssuerOfPatientID (migration 0008): with it, the same PatientID of two sites is two patients.
    issuer: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (CheckConstraint(_in("status", ANALYSIS_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_uid: Mapped[str | None] = mapped_column(String(128))
    study_date: Mapped[date | None] = mapped_column(Date)
    gestational_age_weeks: Mapped[float | None] = mapped_column(Float)
    # Mirrors the status of the latest analysis so the worklist can filter without a join.
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    uploaded_by: Mapped[User | None] = relationship()
    images: Mapped[list[Image]] = relationship(back_populates="study", order_by="Image.position")
    analyses: Mapped[list[Analysis]] = relationship(back_populates="study", order_by="Analysis.id")
    diagnoses: Mapped[list[Diagnosis]] = relationship(back_populates="study", order_by="Diagnosis.id")

    @property
    def latest_analysis(self) -> Analysis | None:
        return self.analyses[-1] if self.analyses else None


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Storage keys are content addresses (sha256 of the stored bytes), see app.web.core.storage.
    storage_key: Mapped[str] = mapped_column(String(128))
    thumbnail_key: Mapped[str] = mapped_column(String(128))
    source_key: Mapped[str | None] = mapped_column(String(128))
    source_sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    frame: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    scan_box: Mapped[list[int] | None] = mapped_column(JSON)
    sop_class: Mapped[str | None] = mapped_column(String(128))
    manufacturer: Mapped[str | None] = mapped_column(String(128))
    transfer_syntax: Mapped[str | None] = mapped_column(String(128))
    photometric: Mapped[str | None] = mapped_column(String(32))
    source_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    study: Mapped[Study] = relationship(back_populates="images")


class Analysis(Base):
    __tablename__ = "analyses"
    __table_args__ = (CheckConstraint(_in("status", ANALYSIS_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(64))
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The lease of a running analysis (app.web.services.leases, migration 0007): which worker runs
    # it and until when, renewed by that worker's heartbeat. Another worker takes the analysis
    # only after the lease has expired (a NULL expiry counts as expired). ``attempts`` counts
    # the claims: 1 for an analysis that ran once.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    study: Mapped[Study] = relationship(back_populates="analyses")
    predictions: Mapped[list[ImagePredictionRow]] = relationship(
        back_populates="analysis", order_by="ImagePredictionRow.image_id"
    )
    verdict: Mapped[VerdictRow | None] = relationship(back_populates="analysis")


class ImagePredictionRow(Base):
    __tablename__ = "image_predictions"
    __table_args__ = (
        UniqueConstraint("analysis_id", "image_id", name="uq_image_predictions_analysis_image"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    # A failed image has error set and no label/probabilities.
    error: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(64))
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSON)
    ood: Mapped[bool] = mapped_column(Boolean, default=False)
    ood_score: Mapped[float | None] = mapped_column(Float)
    quality_issue: Mapped[str | None] = mapped_column(Text)
    # Why the gate left the image out of the verdict: a key of app.inference.aggregate
    # (not_ultrasound, quality, view, ood, flagged) and the words; None when it was used.
    exclusion: Mapped[str | None] = mapped_column(String(32))
    exclusion_reason: Mapped[str | None] = mapped_column(Text)
    # The RGBA heatmap PNG, drawn from ``cam`` when first viewed (app.web.services.heatmaps).
    heatmap_key: Mapped[str | None] = mapped_column(String(128))
    # The predicted class's model-resolution Grad-CAM (h×w floats) and the box of the original
    # image the model saw (top, bottom, left, right), migration 0012; NULL on rows stored before.
    # Deferred: only drawing a heatmap reads it; a case view needs no map, only whether one exists.
    cam: Mapped[list[list[float]] | None] = mapped_column(JSON, deferred=True)
    cam_box: Mapped[list[int] | None] = mapped_column(JSON)
    used_in_verdict: Mapped[bool] = mapped_column(Boolean, default=False)

    analysis: Mapped[Analysis] = relationship(back_populates="predictions")
    image: Mapped[Image] = relationship()

    @property
    def has_heatmap(self) -> bool:
        """A heatmap can be shown: stored already, or drawable from the stored map (the worker
        writes ``cam`` and ``cam_box`` together, so the box alone says so without loading the map)."""
        return bool(self.heatmap_key) or self.cam_box is not None


class VerdictRow(Base):
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id"), unique=True)
    label: Mapped[str] = mapped_column(String(64), index=True)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON)
    # None when indeterminate (too few usable images, or too many left out); ``reason`` says why.
    p_abnormal: Mapped[float | None] = mapped_column(Float, index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    aggregation: Mapped[str] = mapped_column(String(16))
    # Image ids, most supportive of the verdict first.
    support: Mapped[list[int]] = mapped_column(JSON, default=list)
    # The gate's counts (app.inference.aggregate): n_used + n_excluded = n_total, the study's
    # images; excluded_by_reason splits n_excluded by reason key ("ood", "quality", "failed").
    n_used: Mapped[int] = mapped_column(Integer)
    n_excluded: Mapped[int] = mapped_column(Integer)
    n_total: Mapped[int] = mapped_column(Integer)
    excluded_by_reason: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)

    analysis: Mapped[Analysis] = relationship(back_populates="verdict")


ONE_FINAL_INDEX = "uq_diagnoses_one_final_per_study"
ONE_SUCCESSOR_INDEX = "uq_diagnoses_amends_id"


class Diagnosis(Base):
    """A radiologist's read. Rows are never updated: an amendment is a new row pointing at the old."""

    __tablename__ = "diagnoses"
    __table_args__ = (
        CheckConstraint(_in("kind", DIAGNOSIS_KINDS), name="kind"),
        CheckConstraint("confidence IS NULL OR (confidence BETWEEN 1 AND 5)", name="confidence"),
        # Sign-off integrity, enforced by the database so that two radiologists signing at the
        # same instant cannot both succeed: one "final" per study, and each final or amendment
        # amended at most once (the current diagnosis is the head of one chain).
        Index(
            ONE_FINAL_INDEX,
            "study_id",
            unique=True,
            sqlite_where=text("kind = 'final'"),
            postgresql_where=text("kind = 'final'"),
        ),
        Index(ONE_SUCCESSOR_INDEX, "amends_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    analysis_id: Mapped[int | None] = mapped_column(ForeignKey("analyses.id"))
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64))
    agrees_with_ai: Mapped[bool | None] = mapped_column(Boolean)
    confidence: Mapped[int | None] = mapped_column(Integer)
    notes: Mapped[str] = mapped_column(Text, default="")
    signed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    time_to_decision_s: Mapped[float | None] = mapped_column(Float)
    amends_id: Mapped[int | None] = mapped_column(ForeignKey("diagnoses.id"))
    amendment_reason: Mapped[str | None] = mapped_column(Text)

    study: Mapped[Study] = relationship(back_populates="diagnoses")
    signed_by: Mapped[User] = relationship()


MEASUREMENT_KINDS = ("distance", "ellipse")
# The named CNS measurements (app.biometry.references) and "OTHER" for an unnamed caliper.
MEASUREMENT_NAMES = ("BPD", "OFD", "HC", "ATRIUM", "TCD", "CM", "OTHER")


class Measurement(Base):
    """A caliper or ellipse a reader drew on an image, in millimetres (migration 0011).

    The length is computed on the server from the points and the image's DICOM calibration,
    never taken from the browser. Rows are not updated; removing one sets ``deleted_at``.
    """

    __tablename__ = "measurements"
    __table_args__ = (
        CheckConstraint(_in("kind", MEASUREMENT_KINDS), name="kind"),
        CheckConstraint(_in("name", MEASUREMENT_NAMES), name="name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    name: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[list[list[float]]] = mapped_column(JSON)
    value_mm: Mapped[float] = mapped_column(Float)
    axes_mm: Mapped[list[float] | None] = mapped_column(JSON)
    gestational_age_weeks: Mapped[float | None] = mapped_column(Float)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])


CHECKLIST_ANSWERS = ("normal", "abnormal", "not_seen")


class CnsChecklist(Base):
    """The reader's ISUOG basic CNS examination items for a study (migration 0011).

    Each save adds a row; the newest is the study's checklist, the older ones its history.
    """

    __tablename__ = "cns_checklists"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    items: Mapped[dict[str, str]] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text, default="")
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    recorded_by: Mapped[User] = relationship()


class AuditEvent(Base):
    """Who did what to which case, when. ``detail`` never holds patient names or IDs."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_study_at", "study_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# Every column that names a blob of the content store (app.web.core.storage). The startup sweep
# (app.web.services.sweep) deletes blobs that none of them names, so a new blob column must be
# added here or its blobs would be swept.
BLOB_KEY_COLUMNS = (
    Image.storage_key,
    Image.thumbnail_key,
    Image.source_key,
    ImagePredictionRow.heatmap_key,
)

PUSH_STATUSES = ("pending", "sent", "failed")


class DicomPush(Base):
    """One push of a study's result objects (SR, SC, PDF) to the configured PACS (migration 0008).

    ``revision`` names the content pushed (app.web.dicom.case_record.CaseRecord.revision: the
    analysis and the signed reads), so a new analysis or a new signed read makes a new push and
    an old one is never repeated. ``last_error`` holds DIMSE words, never patient data.
    """

    __tablename__ = "dicom_pushes"
    __table_args__ = (
        CheckConstraint(_in("status", PUSH_STATUSES), name="status"),
        UniqueConstraint(
            "study_id", "destination", "revision", name="uq_dicom_pushes_study_destination_revision"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    destination: Mapped[str] = mapped_column(String(128))
    revision: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


THROTTLE_SCOPES = ("account", "address")


class LoginThrottleRow(Base):
    """Recent failed sign-ins of one account (lower-cased user name) or one client address.

    Kept in the database so that every server process sees the same counts. A row is forgotten
    once its last failure is older than the window and it is not locked.
    """

    __tablename__ = "login_throttle"
    __table_args__ = (
        CheckConstraint(_in("scope", THROTTLE_SCOPES), name="scope"),
        UniqueConstraint("scope", "key", name="uq_login_throttle_scope_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(128))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserSession(Base):
    """A signed-in browser. The cookie carries a random secret; only its sha256 is stored here, so
    a copy of the database signs nobody in. Deleting the row ends the session (sign-out, password
    change, deactivation); it also ends when idle or too old (app.web.services.credentials)."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token of the JSON API, stored as the sha256 of its secret. Revoked tokens keep
    their row (``revoked_at``) so that the audit trail's token ids stay meaningful."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# ---- reader studies (migration 0009; app.web.services.reader_studies) ----------------------
READER_MODES = ("unassisted", "concurrent", "second-read")
READER_DESIGNS = ("crossover", "sequential")
REFERENCE_SOURCES = ("import", "diagnosis")


class ReaderStudy(Base):
    """A reader study: cases with a reference standard, readers, modes and a design.

    ``seed`` makes every reader's case order reproducible (app.readerstudy.design).
    """

    __tablename__ = "reader_studies"
    __table_args__ = (CheckConstraint(_in("design", READER_DESIGNS), name="design"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    modes: Mapped[list[str]] = mapped_column(JSON)
    design: Mapped[str] = mapped_column(String(16))
    washout_days: Mapped[int] = mapped_column(Integer, default=0)
    show_heatmaps: Mapped[bool] = mapped_column(Boolean, default=True)
    idle_threshold_s: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    cases: Mapped[list[ReaderStudyCase]] = relationship(order_by="ReaderStudyCase.id")
    readers: Mapped[list[ReaderStudyReader]] = relationship(order_by="ReaderStudyReader.id")


class ReaderStudyCase(Base):
    """One case of a reader study and its reference standard (never shown to readers)."""

    __tablename__ = "reader_study_cases"
    __table_args__ = (
        CheckConstraint(_in("reference_source", REFERENCE_SOURCES), name="reference_source"),
        UniqueConstraint("reader_study_id", "study_id", name="uq_reader_study_cases_study"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_study_id: Mapped[int] = mapped_column(ForeignKey("reader_studies.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    reference_label: Mapped[str] = mapped_column(String(64))
    reference_source: Mapped[str] = mapped_column(String(16))
    # The AI's answer frozen when the case joined the study, so a later re-analysis cannot change
    # what the readers were shown or the AI-alone results.
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id"))

    study: Mapped[Study] = relationship()
    analysis: Mapped[Analysis] = relationship()


class ReaderStudyReader(Base):
    __tablename__ = "reader_study_readers"
    __table_args__ = (UniqueConstraint("reader_study_id", "user_id", name="uq_reader_study_readers_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_study_id: Mapped[int] = mapped_column(ForeignKey("reader_studies.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)

    user: Mapped[User] = relationship()


class ReaderStudyRead(Base):
    """One planned read: a reader, a case, a mode, in a session at a position of that reader's order.

    Filled in as the read happens: shown (the server's clock), in second-read mode the unaided
    answer and the reveal, then the answer. ``read_time_s`` excludes ``idle_s``, the part of
    each gap between server-seen events longer than the study's idle threshold.
    """

    __tablename__ = "reader_study_reads"
    __table_args__ = (
        CheckConstraint(_in("mode", READER_MODES), name="mode"),
        CheckConstraint("confidence IS NULL OR (confidence BETWEEN 1 AND 5)", name="confidence"),
        CheckConstraint(
            "first_confidence IS NULL OR (first_confidence BETWEEN 1 AND 5)", name="first_confidence"
        ),
        UniqueConstraint("reader_study_id", "user_id", "case_id", "mode", name="uq_reader_study_reads_plan"),
        Index("ix_reader_study_reads_order", "reader_study_id", "user_id", "session", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_study_id: Mapped[int] = mapped_column(ForeignKey("reader_studies.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("reader_study_cases.id"))
    mode: Mapped[str] = mapped_column(String(16))
    session: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idle_s: Mapped[float] = mapped_column(Float, default=0.0)
    first_label: Mapped[str | None] = mapped_column(String(64))
    first_confidence: Mapped[int | None] = mapped_column(Integer)
    first_read_time_s: Mapped[float | None] = mapped_column(Float)
    revealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    label: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[int | None] = mapped_column(Integer)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_time_s: Mapped[float | None] = mapped_column(Float)

    case: Mapped[ReaderStudyCase] = relationship()
    user: Mapped[User] = relationship()


class StudyClaim(Base):
    """Who a case is assigned to and who is reading it now (migration 0010); one row per case
    that has either. The lock is soft: it only tells others someone is reading, it expires at
    ``lock_expires_at`` unless the reader's open case page renews it, and it never blocks a
    sign-off (the diagnosis chain's own checks do that)."""

    __tablename__ = "study_claims"

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    assigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lock_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lock_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    assigned_to: Mapped[User | None] = relationship(foreign_keys=[assigned_to_id])
    lock_user: Mapped[User | None] = relationship(foreign_keys=[lock_user_id])
