"""Uploads: receive files, ingest them into studies, store images, create rows, all or nothing.

``receive_files`` streams the request's files into a private temp folder
(enforcing the per-file limit); ``import_upload`` runs ingestion (app.ingest),
which hands each decoded frame to a sink that stores it content-addressed at once
(so memory holds one frame, not the upload) and, when this process runs the analysis
worker, leaves each image's model input for it (app.web.services.prepared_inputs); the
source files are moved into the store from the private temp folder; then it creates
patients, studies, images and queued analyses in ONE transaction. If anything fails, the transaction is
rolled back and every blob this upload created (and nothing references) is
removed. Analysis happens later, in app.web.services.analysis_worker.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import UploadFile
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.web.core.blob_store import BlobStore
from app.web.core.db import insert_for, utcnow
from app.web.core.input_guard import EARLIEST_YEAR, LATEST_YEAR, control_character_message
from app.web.core.models import BLOB_KEY_COLUMNS, Analysis, Image, Patient, Study, User
from app.web.errors import InvalidInput, TooLarge
from app.web.runtime import Runtime
from app.web.services.audit import record_event
from app.web.settings import Settings

if TYPE_CHECKING:
    from app.ingest.types import IngestedImage
    from app.web.services.prepared_inputs import ForWorker

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
    # None when the import was asked not to queue an analysis (the DICOM listener queues one
    # per study once the sender is done) and the study has none yet.
    analysis_id: int | None
    status: str
    n_images: int
    # Every image of it was already stored in this case: nothing new was made (a re-upload).
    duplicate: bool = False


class NothingUsable(InvalidInput):
    """No file of the import gave an image; ``rejected`` says why for each (the DICOM listener
    answers a C-STORE with the reason, without parsing the message)."""

    def __init__(self, message: str, rejected: list[RejectedUpload]) -> None:
        super().__init__(message)
        self.rejected = rejected


@dataclass
class UploadOutcome:
    studies: list[CreatedStudy] = field(default_factory=list)
    rejected: list[RejectedUpload] = field(default_factory=list)
    # Seconds by stage: decode (ingestion without the hand-over to the sink and the storing),
    # handover (waiting for the sink), encode (the display PNGs and thumbnails, summed over the
    # sink's threads), model_input (model inputs prepared for this process's worker, summed over
    # the same threads), store (their blobs written, by ingestion's thread), prepare (source
    # files stored), db (the transaction).
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ReceivedFiles:
    """Files of one upload in a private temp folder. Call ``cleanup`` when done."""

    directory: Path
    paths: list[Path] = field(default_factory=list)
    display_names: dict[str, str] = field(default_factory=dict)  # temp path -> uploaded name
    # Files refused before ingestion (over the per-file limit): the rest of the upload goes on.
    rejected: list[RejectedUpload] = field(default_factory=list)

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


def _plausible(study_date: date | None) -> date | None:
    """A DICOM StudyDate outside 1900-2100 (a modality's unset clock: 00010101) is no date. The
    study is kept, with its date unknown (the form's date fills it); the form's own date field
    is refused instead (UploadOverrides.from_form), since a person can correct it."""
    if study_date is None or not EARLIEST_YEAR <= study_date.year <= LATEST_YEAR:
        return None
    return study_date


def _safe_name(name: str | None, index: int) -> str:
    base = Path((name or "").replace("\\", "/")).name
    base = _UNSAFE_NAME.sub("_", base).strip(" .") or f"file{index}"
    return base[:120]


async def receive_files(files: Sequence[UploadFile], settings: Settings) -> ReceivedFiles:
    """Stream uploaded files to a temp folder. A file over the per-file limit is left out and
    listed in ``rejected``; raises TooLarge (413) when every file is, or when the whole upload is
    over the request limit, and InvalidInput (no files)."""
    real = [f for f in files if f.filename]
    if not real:
        raise InvalidInput("no files were uploaded; choose DICOM, PNG/JPEG files or a ZIP archive")
    if len(real) > settings.max_files_per_upload:
        raise TooLarge(f"too many files in one upload (at most {settings.max_files_per_upload}); use a ZIP")
    settings.upload_tmp_dir.mkdir(parents=True, exist_ok=True)
    received = ReceivedFiles(Path(tempfile.mkdtemp(prefix="upload-", dir=settings.upload_tmp_dir)))
    total = 0
    limit_mib = settings.max_file_bytes // (1 << 20)
    try:
        for index, upload in enumerate(real):
            display = _safe_name(upload.filename, index)
            target = received.directory / f"{index:05d}-{display}"
            size = 0
            too_large = False
            with target.open("wb") as out:
                while chunk := await upload.read(_CHUNK):
                    size += len(chunk)
                    total += len(chunk)
                    if total > settings.max_request_bytes:
                        request_mib = settings.max_request_bytes // (1 << 20)
                        raise TooLarge(f"the upload is larger than the limit of {request_mib} MiB")
                    if size > settings.max_file_bytes:
                        too_large = True  # only this file is refused; the others are still used
                        break
                    out.write(chunk)
            if too_large:
                target.unlink(missing_ok=True)
                received.rejected.append(
                    RejectedUpload(display, f"{display} is larger than the limit of {limit_mib} MiB per file")
                )
                continue
            received.paths.append(target)
            received.display_names[str(target)] = display
        if not received.paths:
            raise TooLarge("; ".join(r.reason for r in received.rejected))
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


def _upsert_patient(
    db: Session, key: str, patient_id: str | None, name: str | None, issuer: str | None = None
) -> Patient:
    """The patient with ``key``, created if new, and locked until the transaction ends.

    INSERT ... ON CONFLICT DO NOTHING then SELECT: the same new patient uploaded by several
    people at the same instant is created exactly once, and no upload fails on the race
    (SELECT-then-INSERT gave one of them a unique-constraint 500). The row lock (PostgreSQL;
    SQLite holds its single write lock from the INSERT on) serialises the study lookup below
    among concurrent uploads of this patient.
    """
    insert = insert_for(db)
    db.execute(
        insert(Patient)
        .values(patient_key=key, patient_id=patient_id, issuer=issuer, name=name, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[Patient.patient_key])
    )
    patient = db.scalars(select(Patient).where(Patient.patient_key == key).with_for_update()).one()
    # Later uploads may carry details the first lacked.
    patient.patient_id = patient.patient_id or patient_id
    patient.name = patient.name or name
    patient.issuer = patient.issuer or issuer
    return patient


def _existing_study(db: Session, patient: Patient, study_uid: str | None) -> Study | None:
    """The study this patient already has under ``study_uid`` (a re-upload adds to it), or None."""
    if not study_uid:
        return None
    return db.scalars(
        select(Study).where(Study.patient_id == patient.id, Study.study_uid == study_uid).order_by(Study.id)
    ).first()


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
        elif isinstance(value, dict):  # e.g. the calibration: kept as an object, not its repr
            out[str(key)] = _jsonable(value)
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


@dataclass
class _Encoded:
    """One frame's blobs, encoded in a sink thread and not yet stored."""

    key: tuple[str, int | None]
    display_png: bytes
    thumbnail_jpg: bytes
    # The worker's model input (``inputs`` only), and its cache key without the display blob's key.
    prepared: Any = None
    box: Any = None
    metadata: dict[str, Any] | None = None


class _StoringSink:
    """Stores each image (display PNG and thumbnail) the moment ingestion decodes it, and lets
    its pixels go: an upload holds a few decoded frames at a time, not every frame of every file
    until the import ends. Blobs it writes are in ``created`` until rows name them.

    With ``threads`` > 1 the encoding runs in a thread pool (OpenCV releases the GIL) while
    ingestion decodes the next frame; at most two frames per thread wait, so memory stays
    bounded. The encoded blobs are written by ingestion's own thread as it hands frames over:
    a write is several system calls, each a GIL hand-over, and from the encoding threads they
    queued behind ingestion's Python code (the store took longer than the encoding). ``finish``
    waits for every frame, stores the rest and raises the first failure.

    With ``inputs`` (this process's own worker will analyse the upload) each image's model input
    is prepared from the pixels in memory too and left there for the worker
    (app.web.services.prepared_inputs): the worker then neither decodes nor prepares the PNG.
    """

    def __init__(
        self,
        store: BlobStore,
        threads: int = 1,
        inputs: ForWorker | None = None,
    ) -> None:
        self.store = store
        self.inputs = inputs
        self.created: set[str] = set()
        # (file sha256, frame) -> (display key, thumbnail key); ingestion admits each file once.
        self.keys: dict[tuple[str, int | None], tuple[str, str]] = {}
        # Seconds spent encoding (summed over threads), preparing model inputs (the same threads)
        # and storing (ingestion's thread) (benchmarks/bench_pipeline.py).
        self.encode_s = 0.0
        self.model_input_s = 0.0
        self.store_s = 0.0
        # Seconds ingestion's own thread spent handing frames over (encoding them itself, or
        # waiting for a free thread) and waiting at ``finish``, storing not included: the rest
        # of its time is decoding.
        self.handover_s = 0.0
        self._threads = max(1, threads)
        self._lock = threading.Lock()
        self._pending: deque[Future[_Encoded]] = deque()
        self._pool = ThreadPoolExecutor(self._threads, "upload-encode") if self._threads > 1 else None

    def _put(self, data: bytes, suffix: str) -> str:
        key, new = self.store.put_bytes(data, suffix)
        if new:
            self.created.add(key)
        return key

    def _encode(self, key: tuple[str, int | None], image: IngestedImage) -> _Encoded:
        from app.inference.render import encode_jpeg, encode_png, grey_if_equal, thumbnail
        from app.preprocess import ensure_rgb_uint8

        t0 = time.perf_counter()
        # B-mode ultrasound is grey in RGB: found out once, and the grey plane (a third of the
        # pixels) is what is encoded, shrunk and prepared.
        pixels = grey_if_equal(ensure_rgb_uint8(image.pixels))
        # The display copy is what the worker analyses and the viewer shows: lossless PNG
        # (encode_display_png's bytes). The thumbnail is only for finding the image in the strip: JPEG.
        encoded = _Encoded(
            key, encode_png(pixels), encode_jpeg(grey_if_equal(thumbnail(pixels, max_side=THUMBNAIL_SIDE)))
        )
        t1 = time.perf_counter()
        if self.inputs is not None:
            self._prepare_input(encoded, image, pixels)
        t2 = time.perf_counter()
        with self._lock:
            self.encode_s += t1 - t0
            self.model_input_s += t2 - t1 if self.inputs is not None else 0.0
        return encoded

    def _prepare_input(self, encoded: _Encoded, image: IngestedImage, pixels: Any) -> None:
        """The worker's model input of this image, from the pixels in memory, under the box and
        metadata its row will hold. Best effort: a failure here leaves the work to the worker,
        which reads the stored PNG and records any error on the image as it always has."""
        from app.inference.prepare import prepare_pixels

        assert self.inputs is not None
        if not self.inputs.analysed(image.frame, image.metadata):
            return  # a loop's frame kept for playback only: the worker never asks for it
        try:
            # A copy first: ingestion may add a note to the shared dict while this thread reads it.
            metadata = _jsonable(dict(image.metadata or {}))
            box = tuple(image.scan_box) if image.scan_box else None
            prepared = prepare_pixels(pixels, self.inputs.spec, box, metadata)
        except Exception as exc:  # never fails the upload: the worker prepares it from the store
            log.warning("model input not prepared at upload (%s); the worker prepares it", type(exc).__name__)
            return
        encoded.prepared, encoded.box, encoded.metadata = replace(prepared, timings={}), box, metadata

    def _store(self, encoded: _Encoded) -> None:
        """Write one frame's blobs (ingestion's thread) and leave its model input for the worker."""
        from app.web.services.prepared_inputs import cache_key

        t0 = time.perf_counter()
        display = self._put(encoded.display_png, "png")
        self.keys[encoded.key] = (display, self._put(encoded.thumbnail_jpg, "jpg"))
        if encoded.prepared is not None and self.inputs is not None:
            self.inputs.cache.put(
                cache_key(display, self.inputs.spec, encoded.box, encoded.metadata), encoded.prepared
            )
        self.store_s += time.perf_counter() - t0

    def __call__(self, image: IngestedImage) -> IngestedImage:
        key = (image.sha256, image.frame)
        t0 = time.perf_counter()
        stored_before = self.store_s
        try:
            if self._pool is None:
                self._store(self._encode(key, image))
            else:
                while len(self._pending) >= 2 * self._threads:
                    self._store(self._pending.popleft().result())
                # Frames already encoded are written now, while the threads encode the next ones.
                while self._pending and self._pending[0].done():
                    self._store(self._pending.popleft().result())
                self._pending.append(self._pool.submit(self._encode, key, image))
        finally:
            self.handover_s += time.perf_counter() - t0 - (self.store_s - stored_before)
        return image.without_pixels()

    def finish(self) -> None:
        """Wait for every frame handed over and store it; the first failure is raised (after all
        have ended, so that nothing is written after the caller cleans up)."""
        t0 = time.perf_counter()
        stored_before = self.store_s
        failure: BaseException | None = None
        try:
            while self._pending:
                future = self._pending.popleft()
                try:
                    encoded = future.result()
                    if failure is None:
                        self._store(encoded)
                except BaseException as exc:
                    failure = failure or exc
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=False)
            self.handover_s += time.perf_counter() - t0 - (self.store_s - stored_before)
        if failure is not None:
            raise failure


@dataclass
class _StoredImage:
    """One ingested image with its blobs already in the content store (no database row yet)."""

    image: Any
    storage_key: str
    thumbnail_key: str
    source_key: str | None


@dataclass
class _PreparedStudy:
    """What one study's rows will hold, worked out before the transaction opens."""

    index: int
    key: str
    patient_id: str | None
    name: str | None
    study_uid: str | None
    study_date: date | None
    gestational_age_weeks: float | None
    images: list[_StoredImage]
    issuer: str | None = None


def _prepare(
    runtime: Runtime,
    result: Any,
    overrides: UploadOverrides,
    received: ReceivedFiles,
    key_salt: str,
    sink: _StoringSink,
) -> list[_PreparedStudy]:
    """Apply the form's overrides, store each source file and pair every image with its blobs
    (the display PNG and thumbnail the sink stored while ingesting).

    Done before any database work so that the transaction that creates the rows is short: it
    never encodes or writes images while holding a connection (and on SQLite the write lock).
    """
    created_keys = sink.created
    prepared: list[_PreparedStudy] = []
    source_keys: dict[str, str] = {}  # file sha256 -> its blob
    private = received.directory.resolve()
    single = len(result.studies) == 1
    unnamed = _folders_without_identity(received)
    anonymous: list[str] = []
    for ingested in result.studies:
        if _has_no_identity(ingested, unnamed) and not overrides.patient_id:
            anonymous.extend(_display_source(image.source, received) for image in ingested.images)
    if anonymous:
        shown = ", ".join(anonymous[:5]) + (f" and {len(anonymous) - 5} more" if len(anonymous) > 5 else "")
        raise InvalidInput(
            f"no patient ID for {shown}: these images do not carry one (PNG/JPEG exports, DICOM "
            "without PatientID and StudyInstanceUID). Enter the patient ID, or upload a ZIP with "
            "one folder per patient, named by the patient ID"
        )
    for index, ingested in enumerate(result.studies):
        patient_id = None if _has_no_identity(ingested, unnamed) else ingested.patient_id
        name = ingested.patient_name
        study_date = _plausible(parse_study_date(ingested.study_date))
        ga = ingested.gestational_age_weeks
        if single or not patient_id:
            patient_id = overrides.patient_id or patient_id
        if single or not name:
            name = overrides.patient_name or name
        if single or study_date is None:
            study_date = overrides.study_date or study_date
        if single or ga is None:
            ga = overrides.gestational_age_weeks if overrides.gestational_age_weeks is not None else ga
        key = ingested.patient_key
        issuer = ingested.issuer
        if patient_id and patient_id != ingested.patient_id:
            # A typed patient ID: its issuer is unknown, so it keys alone.
            key, issuer = _patient_key_for(patient_id, key_salt), None
        images: list[_StoredImage] = []
        for image in ingested.images:
            source_path = Path(image.source)
            # The frames of a loop share one file, which the first of them moved into the store.
            source_key = source_keys.get(image.sha256)
            if source_key is None and "!" not in image.source and source_path.is_file():
                # The upload's own temp copy is moved in, not copied (the same filesystem:
                # Settings.upload_tmp_dir); ingestion is done with it and cleanup removes the rest.
                move = source_path.resolve().is_relative_to(private)
                source_key, new = runtime.store.put_file(source_path, image.sha256, "src", move=move)
                source_keys[image.sha256] = source_key
                if new:
                    created_keys.add(source_key)
            storage_key, thumbnail_key = sink.keys[(image.sha256, image.frame)]
            images.append(_StoredImage(image, storage_key, thumbnail_key, source_key))
        prepared.append(
            _PreparedStudy(index, key, patient_id, name, ingested.study_uid, study_date, ga, images, issuer)
        )
    return prepared


def _folders_without_identity(received: ReceivedFiles) -> set[str]:
    """Folder names that ingestion may take for a patient ID but that name no patient.

    Ingestion names a study of PNG/JPEG files after their folder (an export laid out as
    <patient ID>/<image>). In an upload, files outside any folder sit in this upload's temp
    folder, and files at the root of a ZIP get the archive's temp name: neither is an ID, and
    taking it made a new, randomly named patient of every such upload.
    """
    return {received.directory.name} | {path.stem for path in received.paths}


def _has_no_identity(ingested: Any, unnamed: set[str]) -> bool:
    """No patient ID, and no Study Instance UID to stand in for one (DICOM without PatientID
    is keyed by its study UID, which is stable; a folder-named study is keyed by the folder)."""
    return ingested.study_uid is None and (not ingested.patient_id or ingested.patient_id in unnamed)


def _image_row(study_id: int, position: int, stored: _StoredImage, received: ReceivedFiles) -> Image:
    image = stored.image
    meta = image.metadata or {}
    return Image(
        study_id=study_id,
        position=position,
        storage_key=stored.storage_key,
        thumbnail_key=stored.thumbnail_key,
        source_key=stored.source_key,
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


def _save_study(
    db: Session,
    prepared: _PreparedStudy,
    received: ReceivedFiles,
    user: User | None,
    n_rejected: int,
    queue_analysis: bool = True,
    audit_detail: dict[str, Any] | None = None,
) -> CreatedStudy:
    """Create (or, for a Study Instance UID the patient already has, extend) one study's rows.

    ``queue_analysis=False`` stores the images only; the caller queues the analysis later
    (``queue_study_analysis``), when the sender has sent the whole study.
    """
    holder = _case_holding_all(db, prepared)
    if holder is not None:
        # The same files again (a re-upload, perhaps under another typed patient ID or age):
        # the case they are in is the answer, and nothing new is made.
        record_event(
            db,
            user,
            "study.upload",
            study_id=holder.id,
            n_images=0,
            n_already_stored=len(prepared.images),
            n_rejected=n_rejected,
            duplicate=True,
            **(audit_detail or {}),
        )
        analysis_id = db.scalar(select(func.max(Analysis.id)).where(Analysis.study_id == holder.id))
        n_images = int(db.scalar(select(func.count(Image.id)).where(Image.study_id == holder.id)) or 0)
        return CreatedStudy(holder.id, analysis_id, holder.status, n_images, duplicate=True)
    patient = _upsert_patient(db, prepared.key, prepared.patient_id, prepared.name, prepared.issuer)
    study = _existing_study(db, patient, prepared.study_uid) or _patient_case_holding_any(
        db, patient, prepared
    )
    if study is None:
        study = Study(
            patient_id=patient.id,
            study_uid=prepared.study_uid,
            study_date=prepared.study_date,
            gestational_age_weeks=prepared.gestational_age_weeks,
            status="queued",
            uploaded_by_id=user.id if user else None,
        )
        db.add(study)
        db.flush()
        have: set[tuple[str, int | None]] = set()
        have_sops: set[tuple[str, int | None]] = set()
        next_position = 0
    else:
        rows = db.execute(
            select(Image.source_sha256, Image.frame, Image.position, Image.source_metadata).where(
                Image.study_id == study.id
            )
        )
        existing = list(rows)
        have = {(sha, frame) for sha, frame, _, _ in existing}
        have_sops = {
            (str(meta["sop_instance_uid"]), frame)
            for _, frame, _, meta in existing
            if (meta or {}).get("sop_instance_uid")
        }
        next_position = max((position for _, _, position, _ in existing), default=-1) + 1
    added = 0
    for stored in prepared.images:
        sop = _sop_key(stored.image)
        if (stored.image.sha256, stored.image.frame) in have or (sop is not None and sop in have_sops):
            continue  # already in this study (the same files, or the same instances, again)
        have.add((stored.image.sha256, stored.image.frame))
        if sop is not None:
            have_sops.add(sop)
        db.add(_image_row(study.id, next_position + added, stored, received))
        added += 1
    analysis_id = db.scalar(select(func.max(Analysis.id)).where(Analysis.study_id == study.id))
    if queue_analysis and (added or analysis_id is None):
        # New images: the study is analysed again, as a whole.
        analysis_id = _queue_analysis(db, study)
    record_event(
        db,
        user,
        "study.upload",
        study_id=study.id,
        n_images=added,
        n_already_stored=len(prepared.images) - added,
        n_rejected=n_rejected,
        patient_key=prepared.key,
        **(audit_detail or {}),
    )
    n_images = int(db.scalar(select(func.count(Image.id)).where(Image.study_id == study.id)) or 0)
    return CreatedStudy(study.id, analysis_id, study.status, n_images)


def _sop_key(image: Any) -> tuple[str, int | None] | None:
    """(SOPInstanceUID, frame) of a DICOM image, or None: the same instance sent again with
    other bytes (another transfer syntax, a re-export) is still the same instance."""
    uid = (image.metadata or {}).get("sop_instance_uid")
    return (str(uid), image.frame) if uid else None


def _case_holding_all(db: Session, prepared: _PreparedStudy) -> Study | None:
    """The stored case that already holds every image of ``prepared`` (the same source file:
    sha256 and frame; or, for DICOM, the same SOPInstanceUID and frame, looked for among the
    cases with the same Study Instance UID), if one does. Source hashes are indexed."""
    if not prepared.images:
        return None
    by_sha: dict[int, set[tuple[str, int | None]]] = {}
    shas = sorted({s.image.sha256 for s in prepared.images})
    for start in range(0, len(shas), _IN_CHUNK):
        rows = db.execute(
            select(Image.study_id, Image.source_sha256, Image.frame).where(
                Image.source_sha256.in_(shas[start : start + _IN_CHUNK])
            )
        )
        for study_id, sha, frame in rows:
            by_sha.setdefault(study_id, set()).add((sha, frame))
    by_sop: dict[int, set[tuple[str, int | None]]] = {}
    if prepared.study_uid:
        rows = db.execute(
            select(Image.study_id, Image.source_metadata, Image.frame)
            .join(Study, Study.id == Image.study_id)
            .where(Study.study_uid == prepared.study_uid)
        )
        for study_id, metadata, frame in rows:
            uid = (metadata or {}).get("sop_instance_uid")
            if uid:
                by_sop.setdefault(study_id, set()).add((str(uid), frame))

    def holds_all(study_id: int) -> bool:
        for stored in prepared.images:
            sop = _sop_key(stored.image)
            if (stored.image.sha256, stored.image.frame) in by_sha.get(study_id, set()):
                continue
            if sop is not None and sop in by_sop.get(study_id, set()):
                continue
            return False
        return True

    holders = sorted(study_id for study_id in set(by_sha) | set(by_sop) if holds_all(study_id))
    return db.get(Study, holders[0]) if holders else None


def _patient_case_holding_any(db: Session, patient: Patient, prepared: _PreparedStudy) -> Study | None:
    """This patient's case that already holds some of these files (PNG/JPEG exports carry no
    study UID): the upload adds its new files to it rather than starting a second case."""
    shas = sorted({s.image.sha256 for s in prepared.images})[:_IN_CHUNK]
    if not shas:
        return None
    return db.scalars(
        select(Study)
        .join(Image, Image.study_id == Study.id)
        .where(Study.patient_id == patient.id, Image.source_sha256.in_(shas))
        .order_by(Study.id)
        .limit(1)
    ).first()


def _queue_analysis(db: Session, study: Study) -> int:
    analysis = Analysis(study_id=study.id, status="queued")
    db.add(analysis)
    study.status = "queued"
    db.flush()
    return analysis.id


def queue_study_analysis(db: Session, study_id: int) -> int | None:
    """Queue a new analysis of the whole study unless one is already queued; returns its id, or
    None when the study no longer exists. Not committed: the caller commits."""
    study = db.get(Study, study_id)
    if study is None:
        return None
    queued = db.scalar(
        select(Analysis.id).where(Analysis.study_id == study_id, Analysis.status == "queued").limit(1)
    )
    return queued if queued is not None else _queue_analysis(db, study)


def _inputs_for_worker(runtime: Runtime) -> ForWorker | None:
    """Where the upload leaves model inputs for the analysis worker, when this process runs one
    and has a model; None otherwise (a broker's ``fetalcns worker`` reads the store)."""
    from app.web.services.prepared_inputs import ForWorker

    cache = getattr(runtime.worker, "prepared_inputs", None)
    engine = runtime.inference
    if cache is None or engine is None:
        return None
    return ForWorker(cache, engine.spec, engine.card.cine_rule.max_analysed_frames)


def import_upload(
    runtime: Runtime,
    received: ReceivedFiles,
    overrides: UploadOverrides,
    user: User | None,
    *,
    queue_analysis: bool = True,
    audit_detail: dict[str, Any] | None = None,
) -> UploadOutcome:
    """Ingest received files and create studies with queued analyses (blocking; run in a thread).

    Raises InvalidInput when no file is usable (the message lists each file's reason).
    Nothing is left behind on failure. Images are stored as they are decoded (``_StoringSink``).

    The database is touched only at the end, in one short transaction: ingestion and image
    encoding run without a connection. Studies are saved in patient-key order, so that two
    uploads naming the same patients lock them in the same order and never deadlock.
    """
    from app.ingest import IngestOptions, ingest_paths

    # ZIPs are unpacked inside the upload's own temp folder, not the system's: a crash mid-unpack
    # then leaves them where the start-up sweep looks (found by benchmarks/crash_harness.py).
    options = IngestOptions(
        max_file_bytes=runtime.settings.max_file_bytes,
        max_decoded_bytes=runtime.settings.max_decode_bytes,
        # Every frame of a loop, in order, up to the limit: the case page plays them.
        max_frames_per_cine=runtime.settings.max_cine_frames,
        cine_frames="first",
        temp_root=str(received.directory),
    )
    from app.inference.prepare import default_processes

    sink = _StoringSink(runtime.store, threads=default_processes(), inputs=_inputs_for_worker(runtime))
    created_keys = sink.created
    outcome = UploadOutcome()
    try:
        t0 = time.perf_counter()
        try:
            result = ingest_paths(received.paths, options, sink=sink)
        finally:
            sink.finish()
        t1 = time.perf_counter()
        rejected = list(received.rejected) + [
            RejectedUpload(_display_source(r.source, received), r.reason) for r in result.rejected
        ]
        outcome.rejected = rejected
        if not result.studies:
            reasons = "; ".join(f"{r.filename}: {r.reason}" for r in rejected) or "no images found"
            raise NothingUsable(f"none of the uploaded files could be used ({reasons})", rejected)
        prepared = _prepare(runtime, result, overrides, received, options.key_salt, sink)
        t2 = time.perf_counter()
        saved: dict[int, CreatedStudy] = {}
        with runtime.session_factory() as db:
            for study in sorted(prepared, key=lambda p: (p.key, p.index)):
                saved[study.index] = _save_study(
                    db, study, received, user, len(rejected), queue_analysis, audit_detail
                )
            db.commit()
        outcome.studies = [saved[index] for index in sorted(saved)]
        outcome.timings = {
            # Encoding overlaps decoding in the sink's threads (encode_s and model_input_s are
            # summed over them); storing is ingestion's thread's: decoding is the rest of its time.
            "decode_s": t1 - t0 - sink.handover_s - sink.store_s,
            "handover_s": sink.handover_s,
            "encode_s": sink.encode_s,
            "store_s": sink.store_s,
            "model_input_s": sink.model_input_s,
            "prepare_s": t2 - t1,
            "db_s": time.perf_counter() - t2,
        }
    except BaseException:
        outcome.studies.clear()
        _remove_unreferenced(runtime, created_keys)
        raise
    # Frames stored before a later frame of their file proved corrupt (the file was rejected).
    used = {
        key
        for study in prepared
        for s in study.images
        for key in (s.storage_key, s.thumbnail_key, s.source_key)
    }
    _remove_unreferenced(runtime, created_keys - used)
    log.info(
        "upload by user %s: %d studies, %d images, %d files rejected",
        user.id if user else "-",
        len(outcome.studies),
        sum(s.n_images for s in outcome.studies),
        len(rejected),
    )
    return outcome
