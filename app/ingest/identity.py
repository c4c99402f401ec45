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


def dicom_patient_identity(patient_id: str, issuer: str | None, institution: str | None) -> str:
    """The identity a DICOM patient is keyed by: PatientID within its issuer (IssuerOfPatientID),
    else within the institution (InstitutionName), else alone.

    Two sites' "12345" are two patients. Only a bare PatientID (no issuer, no institution) keys
    as the ID itself, so PNG exports in a folder named by the ID still meet their DICOM study.
    """
    if issuer:
        return f"{patient_id}^^^{issuer}"
    if institution:
        return f"{patient_id}^^^institution:{institution}"
    return patient_id


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
