"""Uploads: receive files, ingest them into studies, store images, create rows, all or nothing.

``receive_files`` streams the request's files into a private temp folder
(enforcing the per-file limit); ``import_upload`` runs ingestion (app.ingest),
which hands each decoded frame to a sink that stores it content-addressed at once
(so memory holds one frame, not the upload), then creates patients, studies, images
and queued analyses in ONE transaction. If anything fails, the transaction is
rolled back and every blob this upload created (and nothing references) is
removed. Analysis happens later, in app.web.services.analysis_worker.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.web.core.input_guard import EARLIEST_YEAR, LATEST_YEAR, control_character_message
from app.web.core.models import BLOB_KEY_COLUMNS, Analysis, Image, Patient, Study, User
from app.web.core.storage import ContentStore
from app.web.errors import InvalidInput, TooLarge
from app.web.runtime import Runtime
from app.web.services.audit import record_event
from app.web.settings import Settings

if TYPE_CHECKING:
    from app.ingest.types import IngestedImage

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
THUMBNAIL_SIDE = 192


@dataclass(frozen=True)
class UploadOverrides:
    """Form fields. With one study in the upload they override the DICOM values;
    with several they only fill what the images lack (so patients are never merged)."""

    patient_name: str | None = None
    patient_id: str | None = None
    study_date: date | None = None
    gestational_age_weeks: float | None = None

    @classmethod
    def from_form(
        cls,
        patient_name: str | None,
        patient_id: str | None,
        study_date: str | None,
        gestational_age_weeks: str | None,
    ) -> UploadOverrides:
        """Parse raw form strings; raises InvalidInput with a readable message."""
        fields = {
            "the patient name": patient_name,
            "the patient ID": patient_id,
            "the study date": study_date,
            "the gestational age": gestational_age_weeks,
        }
        for what, text in fields.items():
            problem = control_character_message(what, text or "")
            if problem:
                raise InvalidInput(problem)
        parsed_date = None
        if study_date and study_date.strip():
            parsed_date = parse_study_date(study_date.strip())
            if parsed_date is None:
                raise InvalidInput("the study date must look like 2025-03-14")
            if not EARLIEST_YEAR <= parsed_date.year <= LATEST_YEAR:
                raise InvalidInput(f"the study date must lie between {EARLIEST_YEAR} and {LATEST_YEAR}")
        ga = None
        if gestational_age_weeks and gestational_age_weeks.strip():
            try:
                ga = float(gestational_age_weeks.replace(",", "."))
            except ValueError:
                raise InvalidInput("the gestational age must be a number of weeks, e.g. 21.5") from None
            if not 4 <= ga <= 45:
                raise InvalidInput("the gestational age must be between 4 and 45 weeks")
        name = (patient_name or "").strip() or None
        pid = (patient_id or "").strip() or None
        if pid and len(pid) > 64:
            raise InvalidInput("the patient ID is too long (at most 64 characters)")
        if name and len(name) > 255:
            raise InvalidInput("the patient name is too long (at most 255 characters)")
        return cls(name, pid, parsed_date, ga)


@dataclass(frozen=True)
class RejectedUpload:
    """A file of the upload that was not used, under the name it was uploaded with (ingestion's
    ``Rejection`` names the temp copy). Not app.ingest's ``RejectedFile``, which is an exception."""

    filename: str
    reason: str


@dataclass(frozen=True)
class CreatedStudy:
    study_id: int
    analysis_id: int
    status: str
    n_images: int


@dataclass
class UploadOutcome:
    studies: list[CreatedStudy] = field(default_factory=list)
    rejected: list[RejectedUpload] = field(default_factory=list)


@dataclass
class ReceivedFiles:
    """Files of one upload in a private temp folder. Call ``cleanup`` when done."""

    directory: Path
    paths: list[Path] = field(default_factory=list)
    display_names: dict[str, str] = field(default_factory=dict)  # temp path -> uploaded name

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def parse_study_date(text: str | None) -> date | None:
    """DICOM (20250314) or ISO (2025-03-14) dates; None when absent or unreadable."""
    if not text:
        return None
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip()[:10], fmt).date()
        except ValueError:
            continue
    return None


def _safe_name(name: str | None, index: int) -> str:
    base = Path((name or "").replace("\\", "/")).name
    base = _UNSAFE_NAME.sub("_", base).strip(" .") or f"file{index}"
    return base[:120]


async def receive_files(files: Sequence[UploadFile], settings: Settings) -> ReceivedFiles:
    """Stream uploaded files to a temp folder. Raises TooLarge (413) or InvalidInput (no files)."""
    real = [f for f in files if f.filename]
    if not real:
        raise InvalidInput("no files were uploaded; choose DICOM, PNG/JPEG files or a ZIP archive")
    if len(real) > settings.max_files_per_upload:
        raise TooLarge(f"too many files in one upload (at most {settings.max_files_per_upload}); use a ZIP")
    settings.upload_tmp_dir.mkdir(parents=True, exist_ok=True)
    received = ReceivedFiles(Path(tempfile.mkdtemp(prefix="upload-", dir=settings.upload_tmp_dir)))
    total = 0
    try:
        for index, upload in enumerate(real):
            display = _safe_name(upload.filename, index)
            target = received.directory / f"{index:05d}-{display}"
            size = 0
            with target.open("wb") as out:
                while chunk := await upload.read(_CHUNK):
                    size += len(chunk)
                    total += len(chunk)
                    if size > settings.max_file_bytes:
                        limit_mib = settings.max_file_bytes // (1 << 20)
                        raise TooLarge(f"{display} is larger than the limit of {limit_mib} MiB per file")
                    if total > settings.max_request_bytes:
                        limit_mib = settings.max_request_bytes // (1 << 20)
                        raise TooLarge(f"the upload is larger than the limit of {limit_mib} MiB")
                    out.write(chunk)
            received.paths.append(target)
            received.display_names[str(target)] = display
    except BaseException:
        received.cleanup()
        raise
    return received


def _display_source(source: str, received: ReceivedFiles) -> str:
    """Turn ingestion's source (a temp path, maybe with !member) back into the uploaded name."""
    for temp_path, display in received.display_names.items():
        if source.startswith(temp_path):
            return display + source[len(temp_path) :]
        name = Path(temp_path).name
        if source.startswith(name):
            return display + source[len(name) :]
    return Path(source).name


def _patient_key_for(patient_id: str, salt: str) -> str:
    from app.ingest.identity import patient_key

    return patient_key(patient_id, salt)


def _find_or_create_patient(db: Session, key: str, patient_id: str | None, name: str | None) -> Patient:
    patient = db.scalar(select(Patient).where(Patient.patient_key == key))
    if patient is None:
        patient = Patient(patient_key=key, patient_id=patient_id, name=name)
        db.add(patient)
        db.flush()
    else:
        # Later uploads may carry details the first lacked.
        patient.patient_id = patient.patient_id or patient_id
        patient.name = patient.name or name
    return patient


def _meta(metadata: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = metadata.get(key)
        if value not in (None, ""):
            return str(value)[:128]
    return None


def _jsonable(metadata: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[str(key)] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
            out[str(key)] = list(value)
        else:
            out[str(key)] = str(value)
    return out


_IN_CHUNK = 500  # keys per IN (...) query: SQLite limits the parameters of one statement


def _remove_unreferenced(runtime: Runtime, keys: set[str]) -> None:
    if not keys:
        return
    ordered = sorted(keys)
    referenced: set[str] = set()
    with runtime.session_factory() as db:
        for start in range(0, len(ordered), _IN_CHUNK):
            chunk = ordered[start : start + _IN_CHUNK]
            for column in BLOB_KEY_COLUMNS:
                referenced |= {k for k in db.scalars(select(column).where(column.in_(chunk))) if k}
    for key in keys - referenced:
        runtime.store.delete(key)


def _store(store: ContentStore, created: set[str], data: bytes, suffix: str) -> str:
    key, new = store.put_bytes(data, suffix)
    if new:
        created.add(key)
    return key


class _StoringSink:
    """Stores each image (display PNG and thumbnail) the moment ingestion decodes it, and lets
    its pixels go: an upload holds about one decoded frame at a time, not every frame of every
    file until the import ends. Blobs it writes are in ``created`` until rows name them."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self.created: set[str] = set()
        # (file sha256, frame) -> (display key, thumbnail key); ingestion admits each file once.
        self.keys: dict[tuple[str, int | None], tuple[str, str]] = {}

    def __call__(self, image: IngestedImage) -> IngestedImage:
        from app.inference.render import encode_png, thumbnail

        display = _store(self.store, self.created, encode_png(image.pixels), "png")
        small = encode_png(thumbnail(image.pixels, max_side=THUMBNAIL_SIDE))
        self.keys[(image.sha256, image.frame)] = (display, _store(self.store, self.created, small, "png"))
        return image.without_pixels()


def import_upload(
    runtime: Runtime, received: ReceivedFiles, overrides: UploadOverrides, user: User | None
) -> UploadOutcome:
    """Ingest received files and create studies with queued analyses (blocking; run in a thread).

    Raises InvalidInput when no file is usable (the message lists each file's reason).
    Nothing is left behind on failure. Images are stored as they are decoded (``_StoringSink``).
    """
    from app.ingest import IngestOptions, ingest_paths

    options = IngestOptions(
        max_file_bytes=runtime.settings.max_file_bytes, max_decoded_bytes=runtime.settings.max_decode_bytes
    )
    sink = _StoringSink(runtime.store)
    created_keys = sink.created
    used_keys: set[str] = set()
    outcome = UploadOutcome()
    try:
        result = ingest_paths(received.paths, options, sink=sink)
        rejected = [RejectedUpload(_display_source(r.source, received), r.reason) for r in result.rejected]
        outcome.rejected = rejected
        if not result.studies:
            reasons = "; ".join(f"{r.filename}: {r.reason}" for r in rejected) or "no images found"
            raise InvalidInput(f"none of the uploaded files could be used ({reasons})")
        single = len(result.studies) == 1
        with runtime.session_factory() as db:
            for ingested in result.studies:
                patient_id = ingested.patient_id
                name = ingested.patient_name
                study_date = parse_study_date(ingested.study_date)
                ga = ingested.gestational_age_weeks
                if single or not patient_id:
                    patient_id = overrides.patient_id or patient_id
                if single or not name:
                    name = overrides.patient_name or name
                if single or study_date is None:
                    study_date = overrides.study_date or study_date
                if single or ga is None:
                    ga = (
                        overrides.gestational_age_weeks if overrides.gestational_age_weeks is not None else ga
                    )
                key = ingested.patient_key
                if patient_id and patient_id != ingested.patient_id:
                    key = _patient_key_for(patient_id, options.key_salt)
                patient = _find_or_create_patient(db, key, patient_id, name)
                study = Study(
                    patient_id=patient.id,
                    study_uid=ingested.study_uid,
                    study_date=study_date,
                    gestational_age_weeks=ga,
                    status="queued",
                    uploaded_by_id=user.id if user else None,
                )
                db.add(study)
                db.flush()
                for position, image in enumerate(ingested.images):
                    source_path = Path(image.source)
                    source_key = None
                    if "!" not in image.source and source_path.is_file():
                        source_key, new = runtime.store.put_file(source_path, image.sha256, "src")
                        used_keys.add(source_key)
                        if new:
                            created_keys.add(source_key)
                    meta = image.metadata or {}
                    display_key, thumbnail_key = sink.keys[(image.sha256, image.frame)]
                    used_keys.update((display_key, thumbnail_key))
                    db.add(
                        Image(
                            study_id=study.id,
                            position=position,
                            storage_key=display_key,
                            thumbnail_key=thumbnail_key,
                            source_key=source_key,
                            source_sha256=image.sha256,
                            filename=_display_source(image.source, received)[:255],
                            frame=image.frame,
                            width=image.width,
                            height=image.height,
                            scan_box=list(image.scan_box) if image.scan_box else None,
                            sop_class=_meta(meta, "sop_class", "sop_class_uid"),
                            manufacturer=_meta(meta, "manufacturer"),
                            transfer_syntax=_meta(meta, "transfer_syntax"),
                            photometric=_meta(meta, "photometric_interpretation"),
                            source_metadata=_jsonable(meta),
                        )
                    )
                analysis = Analysis(study_id=study.id, status="queued")
                db.add(analysis)
                db.flush()
                record_event(
                    db,
                    user,
                    "study.upload",
                    study_id=study.id,
                    n_images=len(ingested.images),
                    n_rejected=len(rejected),
                    patient_key=key,
                )
                outcome.studies.append(CreatedStudy(study.id, analysis.id, "queued", len(ingested.images)))
            db.commit()
    except BaseException:
        outcome.studies.clear()
        _remove_unreferenced(runtime, created_keys)
        raise
    # Frames stored before a later frame of their file proved corrupt (the file was rejected).
    _remove_unreferenced(runtime, created_keys - used_keys)
    log.info(
        "upload by user %s: %d studies, %d images, %d files rejected",
        user.id if user else "-",
        len(outcome.studies),
        sum(s.n_images for s in outcome.studies),
        len(rejected),
    )
    return outcome
