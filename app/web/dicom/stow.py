"""STOW-RS: store the instances of one request and build the Store Instances Response
(PS3.18 10.5.3, Table 10.5.3-1), each instance through the same intake as C-STORE."""

from __future__ import annotations

import io
import logging
from typing import Any

import pydicom

from app.web.core.models import User
from app.web.runtime import Runtime
from app.web.services.dicom_intake import InstanceRefused, queue_received_studies, store_instance

log = logging.getLogger(__name__)

# FailureReason (0008,1197) values, PS3.4 / PS3.18.
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


_UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _uids(data: bytes) -> list[str]:
    """SOP class, SOP instance, study and series UIDs from the header; empty when unreadable."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:
        return ["" for _ in _UID_KEYWORDS]
    return [str(ds.get(k, "") or "") for k in _UID_KEYWORDS]


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def store_parts(
    runtime: Runtime, parts: list[bytes], user: User, base_url: str
) -> tuple[dict[str, Any], int]:
    """Store each part; returns (the response dataset as DICOM JSON, HTTP status): 200 all
    stored, 202 some failed, 409 none stored."""
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    study_ids: set[int] = set()
    study_uids: set[str] = set()
    for data in parts:
        sop_class, sop_instance, study_uid, series_uid = _uids(data)
        reason = None
        try:
            stored = store_instance(runtime, data, sop_instance or None, via="dicomweb", user=user)
        except InstanceRefused:
            reason = CANNOT_UNDERSTAND
        except Exception as exc:  # storage or database: the message may hold patient data
            log.error("storing a STOW-RS instance failed (%s)", type(exc).__name__)
            reason = OUT_OF_RESOURCES
        if reason is not None:
            failed.append(
                {
                    "00081150": _ui(sop_class),
                    "00081155": _ui(sop_instance),
                    "00081197": {"vr": "US", "Value": [reason]},
                }
            )
            continue
        study_ids.update(stored.study_ids)
        study_uids.add(study_uid)
        series_url = f"{base_url}/studies/{study_uid}/series/{series_uid}"
        referenced.append(
            {
                "00081150": _ui(sop_class),
                "00081155": _ui(sop_instance),
                "00081190": {"vr": "UR", "Value": [f"{series_url}/instances/{sop_instance}"]},
            }
        )
    if study_ids:
        queue_received_studies(runtime, study_ids, "dicomweb", user=user)
    answer: dict[str, Any] = {}
    if len(study_uids) == 1:
        answer["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{next(iter(study_uids))}"]}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        answer["00081199"] = {"vr": "SQ", "Value": referenced}
    status = 200 if not failed else 202 if referenced else 409
    return answer, status
