"""What the result objects (SR, SC, PDF) say about a study, gathered once from the database.

Only a study whose latest analysis is done has results; in second-read mode a reader who has
not yet recorded a read gets none (the AI output is withheld, as on the case page).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.web.core.models import Analysis, Diagnosis, Image, ImagePredictionRow, Study, User, VerdictRow
from app.web.core.storage import ContentStore
from app.web.services.studies import ai_withheld_for, stored_exclusion, unread_reader_study_cases


@dataclass(frozen=True)
class ImageResult:
    image: Image
    prediction: ImagePredictionRow | None
    # The original instance (header only, no pixels) and the 1-based frame in it, or None.
    source: Dataset | None
    frame_number: int | None

    @property
    def exclusion(self) -> str | None:
        if self.prediction is None:
            return "not analysed"
        return stored_exclusion(self.prediction)[1]


@dataclass(frozen=True)
class SignedRead:
    kind: str  # final | amendment
    label: str
    signed_by: str
    signed_at: datetime
    notes: str
    amendment_reason: str | None


@dataclass(frozen=True)
class CaseRecord:
    study: Study
    analysis: Analysis
    verdict: VerdictRow
    images: list[ImageResult]
    reads: list[SignedRead]

    @property
    def evidence(self) -> list[Dataset]:
        """The original instances (headers), each once, in image order."""
        seen: dict[str, Dataset] = {}
        for result in self.images:
            if result.source is not None:
                seen.setdefault(str(result.source.SOPInstanceUID), result.source)
        return list(seen.values())

    @property
    def revision(self) -> str:
        """Changes when the content changes: a new analysis, or a new signed read."""
        last = self.reads[-1].signed_at.isoformat() if self.reads else "-"
        return f"{self.analysis.id}:{len(self.reads)}:{last}"


def case_revision(db: Session, analysis_id: int, study_id: int) -> str:
    """``CaseRecord.revision`` from two small queries, without loading the case (the pusher asks
    it of every analysed study)."""
    signed = list(
        db.scalars(
            select(Diagnosis.signed_at)
            .where(Diagnosis.study_id == study_id, Diagnosis.kind.in_(("final", "amendment")))
            .order_by(Diagnosis.signed_at, Diagnosis.id)
        )
    )
    last = signed[-1].isoformat() if signed else "-"
    return f"{analysis_id}:{len(signed)}:{last}"


_HEADERS: OrderedDict[tuple[str, str], Dataset] = OrderedDict()
_HEADERS_LOCK = threading.Lock()
_HEADERS_MAX = 4096


def _source_header(store: ContentStore, key: str | None) -> Dataset | None:
    """The original's header (no pixels). Kept in a bounded cache: blobs never change, and a
    DICOMweb search asks for the results of every study it lists."""
    if not key:
        return None
    cache_key = (str(getattr(store, "root", id(store))), key)
    with _HEADERS_LOCK:
        if cache_key in _HEADERS:
            _HEADERS.move_to_end(cache_key)
            return _HEADERS[cache_key]
    try:
        ds = pydicom.dcmread(io.BytesIO(store.read_bytes(key)), stop_before_pixels=True)
    except Exception:
        return None
    # Result objects copy these Type 2 attributes (present, maybe empty) from their source;
    # modalities often leave some out.
    for keyword in _TYPE_2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, "")
    with _HEADERS_LOCK:
        _HEADERS[cache_key] = ds
        while len(_HEADERS) > _HEADERS_MAX:
            _HEADERS.popitem(last=False)
    return ds


_TYPE_2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def load_case_record(
    db: Session, store: ContentStore, study: Study, viewer: User | None, mode: str
) -> CaseRecord | None:
    """The study's results, or None (not analysed yet, no verdict, or withheld from ``viewer``;
    ``viewer`` None is the system itself, e.g. a push to the PACS)."""
    analysis = db.scalar(
        select(Analysis)
        .where(Analysis.study_id == study.id)
        .order_by(Analysis.id.desc())
        .limit(1)
        .options(selectinload(Analysis.predictions), selectinload(Analysis.verdict))
    )
    if analysis is None or analysis.status != "done" or analysis.verdict is None:
        return None
    if viewer is not None and (
        ai_withheld_for(db, study.id, viewer, mode) or unread_reader_study_cases(db, viewer, [study.id])
    ):
        return None
    predictions = {p.image_id: p for p in analysis.predictions}
    images = list(db.scalars(select(Image).where(Image.study_id == study.id).order_by(Image.position)))
    headers: dict[str, Dataset | None] = {}
    results = []
    for image in images:
        key = image.source_key
        if key and key not in headers:
            headers[key] = _source_header(store, key)
        source = headers.get(key) if key else None
        frame = image.frame + 1 if image.frame is not None else None
        results.append(ImageResult(image, predictions.get(image.id), source, frame))
    diagnoses = db.scalars(
        select(Diagnosis)
        .where(Diagnosis.study_id == study.id, Diagnosis.kind.in_(("final", "amendment")))
        .order_by(Diagnosis.signed_at, Diagnosis.id)
        .options(selectinload(Diagnosis.signed_by))
    )
    reads = [
        SignedRead(d.kind, d.label, d.signed_by.username, d.signed_at, d.notes or "", d.amendment_reason)
        for d in diagnoses
    ]
    return CaseRecord(study, analysis, analysis.verdict, results, reads)


def display_image(store: ContentStore, image: Image) -> np.ndarray:
    """The stored display PNG as H×W×3 RGB uint8."""
    data = np.frombuffer(store.read_bytes(image.storage_key), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def heatmap_overlay(store: ContentStore, result: ImageResult, opacity: float = 0.45) -> np.ndarray | None:
    """The original with its RGBA heatmap blended in (as the viewer shows it), or None. The
    heatmap is the stored PNG, or drawn from the stored map when nobody has viewed it yet."""
    from app.web.services.heatmaps import heatmap_rgba_of

    if result.prediction is None or not result.prediction.has_heatmap:
        return None
    rgba = heatmap_rgba_of(store, result.prediction, result.image)
    if rgba is None:
        return None
    base = display_image(store, result.image)
    if rgba.shape[:2] != base.shape[:2]:
        rgba = cv2.resize(rgba, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_LINEAR)
    weight = rgba[:, :, 3:4].astype(np.float32) * np.float32(opacity / 255.0)
    blended = base.astype(np.float32) * (1 - weight) + rgba[:, :, :3].astype(np.float32) * weight
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
