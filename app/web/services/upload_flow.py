"""The whole upload as routes (API and pages) call it: receive → import → enqueue."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import UploadFile
from fastapi.concurrency import run_in_threadpool

from app.web.core.models import User
from app.web.runtime import Runtime
from app.web.services.uploads import UploadOutcome, UploadOverrides, import_upload, receive_files


async def upload_studies(
    runtime: Runtime, files: Sequence[UploadFile], overrides: UploadOverrides, user: User
) -> UploadOutcome:
    """Store the uploaded files as studies with queued analyses and wake the worker.

    Raises ServiceError subclasses (InvalidInput 422, TooLarge 413) with readable
    messages; on any error nothing is left in the database or storage.
    """
    received = await receive_files(files, runtime.settings)
    try:
        outcome = await run_in_threadpool(import_upload, runtime, received, overrides, user)
    finally:
        received.cleanup()
    if runtime.worker is not None:
        for study in outcome.studies:
            if study.analysis_id is not None:
                runtime.worker.enqueue(study.analysis_id)
    return outcome
