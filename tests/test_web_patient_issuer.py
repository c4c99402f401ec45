"""Patients are keyed by PatientID within its issuer (IssuerOfPatientID), else its institution:
two sites' "12345" stay two patients; one site's studies of a patient stay one."""

from __future__ import annotations

import pytest
from ingest_support import dicom_bytes, make_us_dataset
from web_support import db_url, ultrasound_pixels, web  # noqa: F401

from app.ingest.identity import dicom_patient_identity

pytestmark = pytest.mark.slow


def _file(seed: int, **attributes: str) -> bytes:
    return dicom_bytes(make_us_dataset(ultrasound_pixels(seed), patient_id="12345", **attributes))


def test_the_identity_includes_the_issuer_else_the_institution() -> None:
    assert dicom_patient_identity("12345", "SITE-A", "Clinic") == "12345^^^SITE-A"
    assert dicom_patient_identity("12345", None, "Clinic") == "12345^^^institution:Clinic"
    assert dicom_patient_identity("12345", None, None) == "12345"


def test_same_patient_id_from_two_issuers_is_two_patients(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    files = [
        ("a1.dcm", _file(1, IssuerOfPatientID="SITE-A")),
        ("a2.dcm", _file(2, IssuerOfPatientID="SITE-A")),  # another study of the same patient
        ("b.dcm", _file(3, IssuerOfPatientID="SITE-B")),
        ("c.dcm", _file(4, InstitutionName="Clinic C")),
        ("d.dcm", _file(5, InstitutionName="Clinic D")),
    ]
    for name, data in files:  # one upload each: a single study takes no form overrides anyway
        assert h.upload([(name, data)]).status_code == 202
    studies = h.client.get("/api/v1/studies", headers=h.auth()).json()
    assert len(studies) == 5
    patients = {s["patient"]["id"]: s["patient"] for s in studies}
    assert len(patients) == 4
    assert sorted(p["issuer"] or "-" for p in patients.values()) == ["-", "-", "SITE-A", "SITE-B"]
    assert {p["patient_id"] for p in patients.values()} == {"12345"}
