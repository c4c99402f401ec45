"""Result objects as DICOM instances of the original study: the SR, one SC per heatmap overlay
and the PDF report (Encapsulated PDF). They appear in DICOMweb (and are pushed to a PACS) once
the study's analysis is done.

Their UIDs are derived from the study, the analysis and the signed reads (``CaseRecord.revision``),
so the same results always carry the same UIDs, and a new analysis or a new signed read makes a
new SR and PDF instance rather than silently changing one a PACS already holds. Objects are built
when first asked for and kept (a bounded cache keyed by their UID: same UID, same content).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy.orm import Session

from app.web.core.models import Study, User
from app.web.core.storage import ContentStore
from app.web.dicom.case_record import CaseRecord, heatmap_overlay, load_case_record
from app.web.services.dicom_index import InstanceEntry, ResultProvider

SR_SERIES_NUMBER, SC_SERIES_NUMBER, PDF_SERIES_NUMBER = 9001, 9002, 9003
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
COMPREHENSIVE_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
)
TYPE_2 = frozenset(PATIENT_STUDY_KEYWORDS) - {"IssuerOfPatientID", "StudyInstanceUID"}

_CACHE: OrderedDict[str, bytes] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_ITEMS = 256


def uid(*parts: object) -> str:
    """A UID in the 2.25 form (PS3.5 B.2: a 128-bit number, no registered root needed), determined
    by ``parts`` (pydicom's generate_uid ignores its entropy sources without a prefix)."""
    digest = hashlib.sha256("\x1f".join(["fetalcns-results", *map(str, parts)]).encode("utf-8")).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _cached(key: str, build: Callable[[], bytes]) -> bytes:
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    data = build()
    with _CACHE_LOCK:
        _CACHE[key] = data
        while len(_CACHE) > _CACHE_ITEMS:
            _CACHE.popitem(last=False)
    return data


def _encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _header(record: CaseRecord, **values: Any) -> dict[str, str]:
    study = record.study
    header = {
        "StudyInstanceUID": study.study_uid or "",
        "PatientID": study.patient.patient_id or "",
        "PatientName": study.patient.name or "",
    }
    header.update({k: str(v) for k, v in values.items() if v not in (None, "")})
    return header


def encapsulated_pdf(record: CaseRecord, pdf: bytes, series_uid: str, sop_uid: str) -> Dataset:
    """Encapsulated PDF IOD (PS3.3 A.45.1), patient and study copied from the first original."""
    source = record.evidence[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    # Type 2 attributes are present even when empty; Type 1/3 ones only when the original has them.
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source:
            ds.add(source[keyword])
        elif keyword in TYPE_2:
            setattr(ds, keyword, "")
    now = datetime.now(UTC)
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = "AI analysis report (fetalcns)"
    ds.InstanceNumber = 1
    ds.ConversionType = "WSD"
    ds.Manufacturer = "fetalcns"
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "fetalcns AI analysis report"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def result_instances(record: CaseRecord, store: ContentStore, banner: str | None) -> list[InstanceEntry]:
    """The SR, the SCs and the PDF of ``record`` as index entries (built lazily)."""
    from app.web.dicom.pdf import build_pdf
    from app.web.dicom.sc import build_sc
    from app.web.dicom.sr import build_sr

    study_uid = record.study.study_uid or ""
    revision = record.revision
    sr_series, sc_series, pdf_series = (
        uid(study_uid, kind) for kind in ("sr-series", "sc-series", "pdf-series")
    )
    sr_uid, pdf_uid = uid(study_uid, "sr", revision), uid(study_uid, "pdf", revision)
    device_uid = uid("device", record.analysis.model_sha256)
    entries = [
        InstanceEntry(
            record.study.id,
            _header(
                record,
                SOPClassUID=COMPREHENSIVE_SR_STORAGE,
                SOPInstanceUID=sr_uid,
                SeriesInstanceUID=sr_series,
                Modality="SR",
                SeriesNumber=SR_SERIES_NUMBER,
                InstanceNumber=1,
                SeriesDescription="AI analysis and diagnosis (fetalcns)",
            ),
            str(ExplicitVRLittleEndian),
            lambda: _cached(sr_uid, lambda: _encode(build_sr(record, sr_series, sr_uid, device_uid))),
            is_result=True,
        )
    ]
    number = 0
    for result in record.images:
        if result.source is None or result.prediction is None or not result.prediction.has_heatmap:
            continue
        number += 1
        sc_uid = uid(study_uid, "sc", record.analysis.id, result.image.id)

        def build(result: Any = result, sc_uid: str = sc_uid, number: int = number) -> bytes:
            overlay = heatmap_overlay(store, result)
            return _encode(build_sc(record, result, overlay, sc_series, sc_uid, number))

        entries.append(
            InstanceEntry(
                record.study.id,
                _header(
                    record,
                    SOPClassUID=SECONDARY_CAPTURE_STORAGE,
                    SOPInstanceUID=sc_uid,
                    SeriesInstanceUID=sc_series,
                    Modality="OT",
                    SeriesNumber=SC_SERIES_NUMBER,
                    InstanceNumber=number,
                    Rows=result.image.height,
                    Columns=result.image.width,
                    SeriesDescription="AI heatmap overlays (fetalcns) - not a diagnosis",
                ),
                str(ExplicitVRLittleEndian),
                lambda build=build, sc_uid=sc_uid: _cached(sc_uid, build),
                is_result=True,
            )
        )
    entries.append(
        InstanceEntry(
            record.study.id,
            _header(
                record,
                SOPClassUID=ENCAPSULATED_PDF_STORAGE,
                SOPInstanceUID=pdf_uid,
                SeriesInstanceUID=pdf_series,
                Modality="DOC",
                SeriesNumber=PDF_SERIES_NUMBER,
                InstanceNumber=1,
                SeriesDescription="AI analysis report (fetalcns)",
            ),
            str(ExplicitVRLittleEndian),
            lambda: _cached(
                pdf_uid,
                lambda: _encode(
                    encapsulated_pdf(record, build_pdf(record, store, banner), pdf_series, pdf_uid)
                ),
            ),
            is_result=True,
        )
    )
    return entries


def make_result_provider(banner: Callable[[], str | None]) -> ResultProvider:
    """The provider create_app registers; ``banner`` reads the loaded model card's warning."""

    def provide(
        db: Session, store: ContentStore, study: Study, viewer: User, mode: str
    ) -> list[InstanceEntry]:
        if not study.study_uid:
            return []
        record = load_case_record(db, store, study, viewer, mode)
        if record is None or not record.evidence:
            return []
        return result_instances(record, store, banner())

    return provide
