"""The JSON API's bodies (they document the API at /docs), and what the services return.

One type per concept: app.web.services build these, the API sends them unchanged and
app.web.pages.views turns them into what the templates show.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

# The closed sets of values, as the OpenAPI document's enums. The database's CHECK
# constraints use the same values (app.web.core.models; a test keeps them equal).
AnalysisStatus = Literal["queued", "running", "done", "failed"]
DiagnosisKind = Literal["preliminary", "final", "amendment"]
Role = Literal["admin", "radiologist"]
Aggregation = Literal["mean", "vote", "geomean"]
ReviewFilter = Literal["reviewed", "unreviewed"]
SortKey = Literal["p_abnormal", "date", "status"]


class TokenOut(BaseModel):
    access_token: str = Field(description="send as `Authorization: Bearer <token>`")
    token_type: Literal["bearer"] = "bearer"
    token_id: int | None = Field(None, description="the token's id, to list or revoke it (/api/v1/tokens)")
    expires_at: datetime | None = None


class ApiTokenOut(BaseModel):
    """An API token as listed: never its secret, which is shown once, when it is created."""

    id: int
    name: str
    user_id: int
    username: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None


class ApiTokenCreateIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="what the token is for, e.g. 'PACS bridge'")
    expires_in_s: int | None = Field(
        None,
        ge=60,
        le=10 * 365 * 24 * 3600,
        description="lifetime in seconds; default FETALCNS_TOKEN_MAX_AGE_S, "
        "at most FETALCNS_TOKEN_MAX_LIFETIME_S",
    )


class NewApiTokenOut(ApiTokenOut):
    access_token: str = Field(description="the bearer token; shown only now, store it safely")
    token_type: Literal["bearer"] = "bearer"


class PatientOut(BaseModel):
    id: int
    patient_id: str | None
    name: str | None
    issuer: str | None = Field(None, description="who issued the patient ID (IssuerOfPatientID), when known")


class VerdictOut(BaseModel):
    label: str
    probabilities: dict[str, float]
    p_abnormal: float | None  # None when indeterminate
    aggregation: Aggregation
    reason: str | None  # why the verdict is indeterminate
    n_used: int = Field(description="images the verdict was computed from")
    n_excluded: int = Field(description="images left out: out of distribution, poor quality, or failed")
    n_total: int = Field(description="the study's images: n_used + n_excluded")
    excluded_by_reason: dict[str, int] = Field(
        description="n_excluded by reason: 'ood' (unlike the training images), 'quality', 'failed'"
    )
    support: list[int] = Field(description="image ids, most supportive of the verdict first")


# One worklist row. ``verdict`` is None while queued/running/failed or when withheld.
# (A comment, not a docstring: a docstring would change the OpenAPI schema.)
class StudySummaryOut(BaseModel):
    id: int
    status: AnalysisStatus
    error: str | None
    created_at: datetime
    study_date: date | None
    gestational_age_weeks: float | None
    patient: PatientOut
    n_images: int
    verdict: VerdictOut | None
    ai_withheld: bool
    reviewed: bool  # has a final diagnosis
    final_label: str | None  # the current final diagnosis (the latest amendment wins)
    in_reader_study: bool = Field(
        False,
        description="the viewer still has reads of this case to answer in a reader study: "
        "AI and diagnosis not listed",
    )
    assigned_to: str | None = None  # the user name of the reader the case is assigned to
    reading_by: str | None = None  # who has the case open now (a soft lock that expires)


ExclusionKey = Literal["not_ultrasound", "quality", "lossy", "view", "ood", "flagged", "failed"]


class CalibrationOut(BaseModel):
    """The physical scale of an image, from its DICOM ultrasound region (PhysicalDeltaX/Y in cm)."""

    mm_per_px_x: float
    mm_per_px_y: float
    region: list[int] = Field(
        description="the calibrated region: top, bottom, left, right (pixels, end-exclusive)"
    )
    source: str


class ImageOut(BaseModel):
    id: int
    position: int
    filename: str
    frame: int | None
    loop: str | None = Field(
        None, description="the cine loop this frame belongs to (a key shared by its frames); null for a still"
    )
    n_frames: int | None = Field(None, description="frames in the source file (a cine loop's full length)")
    frames_stored: int | None = Field(None, description="frames of the source file kept by the server")
    frame_time_ms: float | None = Field(
        None, description="time between cine frames, from FrameTime or CineRate"
    )
    plane: str | None = Field(None, description="the view the scanner names (ViewCodeSequence or ViewName)")
    series_number: int | None = Field(None, description="DICOM SeriesNumber, for the acquisition order")
    instance_number: int | None = Field(None, description="DICOM InstanceNumber, for the acquisition order")
    calibration: CalibrationOut | None = Field(
        None, description="millimetres per pixel; null for PNG/JPEG and DICOM without a physical region"
    )
    width: int
    height: int
    image_url: str
    thumbnail_url: str
    # AI fields: None while not analysed, when the image failed, or when withheld.
    label: str | None
    probabilities: dict[str, float] | None
    ood: bool | None
    ood_score: float | None
    quality_issue: str | None
    # Why the gate left the image out of the verdict (a key and the words); None when used.
    exclusion: ExclusionKey | None = None
    exclusion_reason: str | None = None
    used_in_verdict: bool | None
    heatmap_url: str | None
    error: str | None  # why this image could not be analysed
    lossy_compression: str | None = Field(
        None,
        description="how the pixels were lossily compressed (transfer syntax, ratio, method); null: lossless",
    )


class DiagnosisOut(BaseModel):
    id: int
    kind: DiagnosisKind
    label: str
    agrees_with_ai: bool | None
    confidence: int | None
    notes: str
    signed_by: str
    signed_at: datetime
    time_to_decision_s: float | None
    amends_id: int | None
    amendment_reason: str | None


class AnalysisOut(BaseModel):
    id: int
    status: AnalysisStatus
    error: str | None
    model_name: str | None
    model_version: str | None
    model_sha256: str | None
    provider: str | None
    timings: dict[str, float]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


PushStatus = Literal["pending", "sent", "failed"]


class PushOut(BaseModel):
    """The latest push of the case's result objects (SR, SC, PDF) to the PACS."""

    destination: str = Field(description="AE@host:port of the PACS")
    status: PushStatus
    attempts: int
    n_instances: int
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None


class StudyOut(StudySummaryOut):
    study_uid: str | None
    analysis: AnalysisOut | None
    images: list[ImageOut]
    diagnoses: list[DiagnosisOut]
    pacs_push: PushOut | None = Field(None, description="null when no result was pushed to a PACS")

    @computed_field(  # type: ignore[prop-decorator]
        description="the case's version: id of the current final diagnosis or amendment (null before "
        "sign-off). Send it back as `based_on` when signing, so that a read made on an older "
        "version is refused with 409 instead of silently amending a diagnosis its author never saw."
    )
    @property
    def current_diagnosis_id(self) -> int | None:
        signed = [d.id for d in self.diagnoses if d.kind in ("final", "amendment")]
        return max(signed) if signed else None


class UploadedStudyOut(BaseModel):
    study_id: int
    status: AnalysisStatus
    n_images: int
    duplicate: bool = Field(
        False, description="every file was already stored in this case: the upload made nothing new"
    )


class RejectedOut(BaseModel):
    filename: str
    reason: str


class UploadOut(BaseModel):
    study_id: int = Field(description="the first study of the upload")
    status: AnalysisStatus
    studies: list[UploadedStudyOut]
    rejected: list[RejectedOut]


class DiagnosisIn(BaseModel):
    label: str = Field(description="one of the model's class names")
    agrees_with_ai: bool | None = Field(None, description="default: label equals the AI verdict")
    confidence: int | None = Field(None, ge=1, le=5, description="1 (unsure) … 5 (certain)")
    notes: str = Field("", max_length=10_000)
    kind: DiagnosisKind = Field("final", description="an amendment changes a signed final diagnosis")
    reason: str | None = Field(None, description="required for an amendment")
    based_on: int | None = Field(
        None,
        ge=0,
        description="the case's current_diagnosis_id as the reader saw it (0: none yet); "
        "when it is no longer current the answer is 409",
    )


class AuditOut(BaseModel):
    id: int
    at: datetime
    username: str | None
    action: str
    study_id: int | None
    detail: dict[str, Any]


class UserOut(BaseModel):
    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreateIn(BaseModel):
    username: str
    password: str
    role: Role = "radiologist"


class UserUpdateIn(BaseModel):
    role: Role | None = None
    active: bool | None = None
    password: str | None = None


class PasswordChangeIn(BaseModel):
    current_password: str
    new_password: str = Field(description="8-256 characters, not a common password or the user name")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded when the model, the database or the broker is unavailable"
    )
    model: dict[str, str] | None
    provider: str | None
    database: str = Field(description="ok, or why the database cannot be used")
    worker: Literal["off", "running", "stopped"]
    broker: str | None = Field(
        None,
        description="with FETALCNS_BROKER_URL: ok, or 'unreachable: …' (status is then degraded); "
        "null without a broker",
    )
    detail: str | None = None


# ---- reader studies (app.web.services.reader_studies) -------------------------------------
ReaderMode = Literal["unassisted", "concurrent", "second-read"]
ReaderDesign = Literal["crossover", "sequential"]


class ReaderStudyIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    study_ids: list[int] = Field(
        default_factory=list, description="analysed cases; may be left out when reference_csv names them"
    )
    readers: list[str] = Field(min_length=1, description="user names of the readers")
    modes: list[ReaderMode] = Field(min_length=1)
    design: ReaderDesign = "crossover"
    washout_days: int = Field(0, ge=0, le=365, description="days between a reader's sessions on one case")
    show_heatmaps: bool = Field(True, description="show the heatmaps in the aided modes")
    idle_threshold_s: float = Field(60.0, gt=0, le=3600, description="gaps longer than this count as idle")
    seed: int | None = Field(
        None, ge=0, lt=2**31, description="seed of the readers' case orders; default random"
    )
    reference: dict[int, str] = Field(default_factory=dict, description="study id → reference label")
    reference_csv: str | None = Field(
        None,
        max_length=2_000_000,
        description="CSV with a header: 'label' and 'study_uid' (StudyInstanceUID) or 'study_id'",
    )
    reference_from_diagnoses: bool = Field(
        False, description="cases without another reference take their signed final diagnosis"
    )


class CreatedOut(BaseModel):
    id: int


class ReaderStudyOut(BaseModel):
    id: int
    name: str
    modes: list[ReaderMode]
    design: ReaderDesign
    washout_days: int
    show_heatmaps: bool
    idle_threshold_s: float
    seed: int
    n_cases: int
    readers: list[str]
    n_reads: int
    n_done: int
    created_at: datetime


class ReadImageOut(BaseModel):
    id: int
    image_url: str
    thumbnail_url: str
    width: int
    height: int
    # AI fields: present only when the read's mode shows them.
    label: str | None = None
    probabilities: dict[str, float] | None = None
    heatmap_url: str | None = None


class ReadCaseOut(BaseModel):
    images: list[ReadImageOut]
    gestational_age_weeks: float | None
    # The AI's verdict: null in unassisted reads and in second-read reads before the first answer.
    verdict: VerdictOut | None = None


class NextReadOut(BaseModel):
    read_id: int
    study_id: int
    mode: ReaderMode
    session: int
    remaining: int = Field(description="reads this reader has left, this one included")
    awaiting_final: bool = Field(description="second-read: the first answer is in, the final one is due")
    classes: list[str]
    study: ReadCaseOut


class ReadAnswerIn(BaseModel):
    label: str
    confidence: int = Field(ge=1, le=5, description="1 unsure … 5 certain")


class ReadAnswerOut(BaseModel):
    read_id: int
    final: bool = Field(description="false: the unaided answer of a second read; post the final one next")
    study: ReadCaseOut | None = Field(
        None, description="second-read: the case with the AI fields, now revealed"
    )


class ReadRecordOut(BaseModel):
    """One read as exported: who, which case, which mode, both answers, the reference, the time."""

    read_id: int
    reader: str
    study_id: int
    study_uid: str | None
    mode: ReaderMode
    session: int
    position: int
    reference: str
    ai_label: str | None
    ai_p_abnormal: float | None
    first_label: str | None
    first_confidence: int | None
    first_read_time_s: float | None
    label: str | None
    confidence: int | None
    read_time_s: float | None
    idle_s: float
    shown_at: datetime | None
    answered_at: datetime | None


class ArmResultsOut(BaseModel):
    """The metrics of one arm (a mode, one reader in a mode, or the AI alone); null where not defined."""

    n_reads: int
    accuracy: float | None = None
    misdiagnosis_rate: float | None = Field(None, description="normal called an anomaly or an anomaly normal")
    auc: float | None = Field(
        None, description="normal vs anomaly; null when the reads hold one of the two only"
    )
    mean_read_time_s: float | None = None
    median_read_time_s: float | None = None
    sensitivity: dict[str, float | None] = Field(default_factory=dict)
    specificity: dict[str, float | None] = Field(default_factory=dict)
    confusion: list[list[int]] = Field(default_factory=list, description="reference rows × answer columns")
    confusion_columns: list[str] | None = Field(None, description="the AI's columns (with 'indeterminate')")
    per_reader: dict[str, ArmResultsOut] | None = None


ReaderArm = Literal["unassisted", "concurrent", "second-read", "second-read-unaided", "ai-alone"]


class ComparisonOut(BaseModel):
    a: ReaderArm = Field(
        description="a study mode, the unaided first answers of second reads, or the AI alone"
    )
    b: ReaderArm
    metric: Literal["accuracy", "read_time_s", "auc"]
    test: str
    statistic: float | None
    p_value: float
    estimate: float | None = Field(None, description="b − a")
    ci: list[float] | None = Field(None, description="95 % interval of the estimate")
    ci_method: str | None = None
    n_pairs: int | None = None
    df: float | None = Field(None, description="Hillis's denominator degrees of freedom (AUC)")
    n_readers: int | None = None
    n_cases: int | None = None


class ReaderResultsOut(BaseModel):
    classes: list[str]
    modes: dict[str, ArmResultsOut]
    second_read_unaided: ArmResultsOut | None = Field(
        None, description="the unaided first answers of the second reads"
    )
    ai_alone: ArmResultsOut | None
    comparisons: list[ComparisonOut]
    roc: dict[str, list[list[float]]] = Field(
        default_factory=dict,
        description="empirical ROC points [false-positive rate, true-positive rate] per arm, pooled over readers",  # noqa: E501
    )


MeasurementName = Literal["BPD", "OFD", "HC", "ATRIUM", "TCD", "CM", "OTHER"]
MeasurementKind = Literal["distance", "ellipse"]
ChecklistAnswer = Literal["normal", "abnormal", "not_seen"]


class MeasurementIn(BaseModel):
    image_id: int = Field(ge=1, le=2**31 - 1)
    name: MeasurementName = Field(description="BPD, OFD, HC, ATRIUM (lateral ventricle), TCD, CM or OTHER")
    kind: MeasurementKind = Field(
        description="distance: 2 points; ellipse: both ends of an axis, then the width"
    )
    points: list[tuple[float, float]] = Field(
        min_length=2, max_length=3, description="(x, y) in image pixels of the original image"
    )


class MeasurementOut(BaseModel):
    id: int
    study_id: int
    image_id: int
    name: MeasurementName
    title: str
    kind: MeasurementKind
    points: list[tuple[float, float]]
    value_mm: float = Field(
        description="length (distance) or circumference (ellipse), from the DICOM calibration"
    )
    axes_mm: list[float] | None = Field(None, description="an ellipse's major and minor diameters")
    gestational_age_weeks: float | None
    z_score: float | None
    percentile: float | None
    expected_mm: float | None = Field(None, description="the reference's median at this gestational age")
    within_limits: bool | None = Field(None, description="the fixed clinical limits (atrium, cisterna magna)")
    reference: str | None = Field(None, description="the published reference the Z-score comes from")
    note: str = ""
    created_by: str
    created_at: datetime


class ChecklistIn(BaseModel):
    items: dict[str, ChecklistAnswer] = Field(
        description="ISUOG basic CNS examination item → normal, abnormal or not_seen "
        "(unanswered items left out)"
    )
    comment: str = Field("", max_length=4000)


class ChecklistItemOut(BaseModel):
    key: str
    label: str
    answer: ChecklistAnswer | None


class ChecklistOut(BaseModel):
    study_id: int
    items: list[ChecklistItemOut]
    comment: str
    recorded_by: str | None
    recorded_at: datetime | None
