"""Instances arriving over DICOM (C-STORE, STOW-RS): stored through the upload path, one instance
at a time, and the studies they belong to queued for analysis once the sender is done.

Each instance is imported on its own (``import_upload``, all or nothing), so an acknowledged
instance is in the database and the store before the sender hears "success", and a bad one
leaves nothing behind. The analysis is queued separately (``queue_received_studies``): a study
sent image by image is analysed once, not once per image.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select

from app.web.core.models import Analysis, Image, Study, User
from app.web.errors import InvalidInput
from app.web.runtime import Runtime
from app.web.services.audit import record_event
from app.web.services.uploads import (
    NothingUsable,
    ReceivedFiles,
    UploadOverrides,
    import_upload,
    queue_study_analysis,
)

log = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9.]{1,64}$")


class InstanceRefused(Exception):
    """The instance holds no usable image (or no identity); ``reason`` is readable and holds no
    patient data (it becomes the C-STORE ErrorComment or the STOW FailureReason's comment)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StoredInstance:
    study_ids: tuple[int, ...]
    n_images: int


def _file_name(sop_instance_uid: str | None) -> str:
    """The name the case page shows for the instance: its SOP Instance UID, when it is one."""
    if sop_instance_uid and _UID.match(sop_instance_uid):
        return f"{sop_instance_uid}.dcm"
    return "instance.dcm"


def store_instance(
    runtime: Runtime,
    data: bytes,
    sop_instance_uid: str | None,
    via: str,
    user: User | None = None,
    audit: dict[str, Any] | None = None,
) -> StoredInstance:
    """Store one DICOM instance (Part 10 bytes) as images of its study, without queueing analysis.

    Raises InstanceRefused when ingestion rejects it; anything else (storage full, database
    down) propagates, with nothing left behind.
    """
    settings = runtime.settings
    settings.upload_tmp_dir.mkdir(parents=True, exist_ok=True)
    # "upload-" prefix: the start-up sweep removes what a crash leaves here.
    folder = Path(tempfile.mkdtemp(prefix="upload-dicom-", dir=settings.upload_tmp_dir))
    received = ReceivedFiles(folder)
    try:
        path = folder / "00000-instance.dcm"
        path.write_bytes(data)
        received.paths.append(path)
        received.display_names[str(path)] = _file_name(sop_instance_uid)
        try:
            outcome = import_upload(
                runtime,
                received,
                UploadOverrides(),
                user,
                queue_analysis=False,
                audit_detail={"via": via, **(audit or {})},
            )
        except NothingUsable as exc:
            raise InstanceRefused(
                exc.rejected[0].reason if exc.rejected else "no image in the instance"
            ) from None
        except InvalidInput as exc:
            # No patient identity at all (no PatientID, no StudyInstanceUID): nothing to file it under.
            raise InstanceRefused(exc.message) from None
    finally:
        received.cleanup()
    return StoredInstance(
        tuple(study.study_id for study in outcome.studies), sum(s.n_images for s in outcome.studies)
    )


def queue_received_studies(
    runtime: Runtime, study_ids: set[int], via: str, user: User | None = None, **audit: Any
) -> list[int]:
    """Queue one analysis per study (none when one is already queued) and wake this process's
    worker; the analysis is audited as requested by the sender (``via``). Returns the analysis ids."""
    analysis_ids: list[int] = []
    with runtime.session_factory() as db:
        for study_id in sorted(study_ids):
            analysis_id = queue_study_analysis(db, study_id)
            if analysis_id is None:
                continue
            record_event(db, user, "study.analysis_queued", study_id=study_id, via=via, **audit)
            analysis_ids.append(analysis_id)
        db.commit()
    if runtime.worker is not None:
        for analysis_id in analysis_ids:
            runtime.worker.enqueue(analysis_id)
    return analysis_ids


def studies_never_queued(runtime: Runtime) -> set[int]:
    """Studies with images and no analysis at all: received by a listener that stopped before the
    sender finished. Queued when a listener starts."""
    with runtime.session_factory() as db:
        has_analysis = exists().where(Analysis.study_id == Study.id)
        has_image = exists().where(Image.study_id == Study.id)
        return set(db.scalars(select(Study.id).where(has_image, ~has_analysis)))
