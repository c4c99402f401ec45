"""Non-identifying, stable patient keys: safe to write into logs and file names."""

from __future__ import annotations

import hashlib
import hmac

KEY_PREFIX = "pt-"


def patient_key(identity: str, salt: str) -> str:
    """HMAC-SHA256 prefix of a patient identity; the same identity and salt give the same key.

    ``identity`` is the patient ID itself (as in DICOM PatientID), so any component that
    knows an ID computes the same key as ingestion. Ingestion falls back to
    "study:<StudyInstanceUID>" or "folder:<name>" identities when a file has no patient ID.
    """
    digest = hmac.new(salt.encode("utf-8"), identity.encode("utf-8"), hashlib.sha256).hexdigest()
    return KEY_PREFIX + digest[:12]


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
