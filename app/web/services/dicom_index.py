"""The DICOM view of the stored studies: studies → series → instances, for DICOMweb and push.

Originals are the files as received (``Image.source_key``; a multi-frame file is one instance
however many frames were sampled). Instances that were never kept as a file (members of a ZIP
upload, PNG/JPEG) have no DICOM original and are not listed. Result objects (SR, SC, PDF) join
their study's list through ``ResultProvider``s once its analysis is done.

Header values come from the stored file itself (read once per blob: blobs never change).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.web.core.models import Study, User
from app.web.core.storage import ContentStore

# Header attributes the index keeps per instance (QIDO answers, matching, grouping).
HEADER_KEYWORDS: tuple[str, ...] = (
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "StudyDescription",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "InstitutionName",
)


@dataclass(frozen=True)
class InstanceEntry:
    """One DICOM instance of a stored study. ``header`` holds HEADER_KEYWORDS (as strings,
    absent when the file lacks them); ``load`` returns the Part 10 bytes."""

    study_id: int
    header: dict[str, str]
    transfer_syntax: str
    load: Callable[[], bytes]
    is_result: bool = False

    @property
    def sop_instance_uid(self) -> str:
        return self.header.get("SOPInstanceUID", "")

    @property
    def series_uid(self) -> str:
        return self.header.get("SeriesInstanceUID", "")


# A provider adds the result objects of a study (SR, SC...) as instances; ``viewer`` decides
# whether AI output may be shown (second-read mode).
ResultProvider = Callable[[Session, ContentStore, Study, User, str], list[InstanceEntry]]


@dataclass
class StudyEntry:
    study: Study
    instances: list[InstanceEntry] = field(default_factory=list)

    @property
    def study_uid(self) -> str:
        return self.study.study_uid or ""


_HEADER_CACHE: dict[str, tuple[dict[str, str], str]] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 20_000


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def header_of(ds: Dataset) -> dict[str, str]:
    return {k: _text(ds.get(k)) for k in HEADER_KEYWORDS if ds.get(k) not in (None, "")}


def read_header(store: ContentStore, key: str) -> tuple[dict[str, str], str]:
    with _CACHE_LOCK:
        cached = _HEADER_CACHE.get(key)
    if cached is not None:
        return cached
    ds = pydicom.dcmread(io.BytesIO(store.read_bytes(key)), stop_before_pixels=True, force=True)
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    found = (header_of(ds), syntax)
    with _CACHE_LOCK:
        if len(_HEADER_CACHE) >= _CACHE_MAX:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[key] = found
    return found


def _originals(store: ContentStore, study: Study) -> list[InstanceEntry]:
    entries: list[InstanceEntry] = []
    seen: set[str] = set()
    for image in sorted(study.images, key=lambda i: i.position):
        key = image.source_key
        if not key or key in seen or (image.source_metadata or {}).get("format") != "DICOM":
            continue
        seen.add(key)
        try:
            header, syntax = read_header(store, key)
        except Exception:  # a blob that vanished or broke: not listed (db verify reports it)
            continue
        if not header.get("SOPInstanceUID"):
            continue

        def load(key: str = key) -> bytes:
            return store.read_bytes(key)

        entries.append(InstanceEntry(study.id, header, syntax, load))
    return entries


def load_studies(
    db: Session,
    store: ContentStore,
    viewer: User,
    mode: str,
    providers: list[ResultProvider],
    study_uid: str | None = None,
) -> list[StudyEntry]:
    """Every study with a Study Instance UID (or the one with ``study_uid``), with its instances:
    originals first, then what the providers add."""
    query = (
        select(Study)
        .where(Study.study_uid.is_not(None))
        .options(selectinload(Study.images), selectinload(Study.patient))
        .order_by(Study.id)
    )
    if study_uid is not None:
        query = query.where(Study.study_uid == study_uid)
    result = []
    for study in db.scalars(query):
        entry = StudyEntry(study, _originals(store, study))
        for provider in providers:
            entry.instances.extend(provider(db, store, study, viewer, mode))
        result.append(entry)
    return result
