"""Who an upload belongs to: a patient ID is required where the images carry none, implausible
DICOM dates are no dates, and a re-uploaded Study Instance UID joins its study (issue 12)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from ingest_support import dicom_bytes as encode_dicom
from ingest_support import make_us_dataset
from pydicom.uid import generate_uid
from sqlalchemy import select
from web_support import db_url, png_bytes, study_files, ultrasound_pixels, web, zip_bytes  # noqa: F401

from app.web.core.models import Analysis, Patient, Study

pytestmark = pytest.mark.slow


def _png(seed: int) -> bytes:
    return png_bytes(ultrasound_pixels(seed))


def _patients(h: Any) -> dict[str | None, int]:
    """Patient ID -> number of studies."""
    with h.runtime.session_factory() as db:
        return {p.patient_id: len(p.studies) for p in db.scalars(select(Patient))}


def test_png_without_a_patient_id_is_refused_and_nothing_is_stored(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    h.auth()  # signing in is audited: before the counts
    before, keys = h.counts(), h.stored_keys()
    refused = h.upload([("scan.png", _png(1)), ("scan2.png", _png(2))], patient_name="Doe^Jane")
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "no patient ID for scan.png, scan2.png" in detail and "Enter the patient ID" in detail
    root_of_zip = h.upload([("export.zip", zip_bytes([("a.png", _png(3))]))])
    assert root_of_zip.status_code == 422 and "a.png" in root_of_zip.json()["detail"]
    assert h.counts() == before and h.stored_keys() == keys


def test_png_gets_the_patient_id_typed_in_and_keeps_it(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    first = h.upload([("scan.png", _png(1))], patient_id="P-77", patient_name="Doe^Jane")
    second = h.upload([("other.png", _png(2))], patient_id="P-77")
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert _patients(h) == {"P-77": 2}  # one patient, never one named after a temp folder


def test_a_zip_with_one_folder_per_patient_names_them(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    archive = zip_bytes([("PAT-A/a.png", _png(1)), ("PAT-B/b.png", _png(2)), ("PAT-B/c.png", _png(3))])
    answer = h.upload([("export.zip", archive)])
    assert answer.status_code == 202, answer.text
    assert _patients(h) == {"PAT-A": 1, "PAT-B": 1}


def _dicom(seed: int, study_uid: str, **attributes: Any) -> bytes:
    return encode_dicom(
        make_us_dataset(ultrasound_pixels(seed), "PID-DATE", "Date^Test", study_uid, **attributes)
    )


def test_a_dicom_study_date_of_year_one_is_no_date(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    unset_clock = h.upload([("a.dcm", _dicom(1, generate_uid(), StudyDate="00010101"))])
    assert unset_clock.status_code == 202, unset_clock.text
    filled = h.upload([("b.dcm", _dicom(2, generate_uid(), StudyDate="00010101"))], study_date="2025-03-14")
    plain = h.upload([("c.dcm", _dicom(3, generate_uid(), StudyDate="20250101"))])
    with h.runtime.session_factory() as db:
        dates = [db.get(Study, a.json()["study_id"]).study_date for a in (unset_clock, filled, plain)]
    assert dates == [None, date(2025, 3, 14), date(2025, 1, 1)]
    refused = h.upload([("d.dcm", _dicom(4, generate_uid()))], study_date="0001-01-01")
    assert refused.status_code == 422 and "1900" in refused.json()["detail"]


def test_a_study_uploaded_again_gets_only_its_new_images(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    files = study_files(3, patient_id="P-AGAIN", seed=40)
    first = h.upload(files[:2]).json()
    again = h.upload(files[:2]).json()  # the same files: nothing new, nothing queued
    more = h.upload(files).json()  # one new image: added, and the study analysed again
    assert first["study_id"] == again["study_id"] == more["study_id"]
    assert [
        first["studies"][0]["n_images"],
        again["studies"][0]["n_images"],
        more["studies"][0]["n_images"],
    ] == [
        2,
        2,
        3,
    ]
    counts = h.counts()
    assert counts["patients"] == counts["studies"] == 1 and counts["images"] == 3
    with h.runtime.session_factory() as db:
        analyses = list(db.scalars(select(Analysis.status).where(Analysis.study_id == first["study_id"])))
    assert analyses == ["queued", "queued"]
    trail = h.client.get(f"/api/v1/studies/{first['study_id']}/audit", headers=h.auth("admin")).json()
    uploads = [e["detail"] for e in trail if e["action"] == "study.upload"]
    assert [(u["n_images"], u["n_already_stored"]) for u in uploads] == [(2, 0), (0, 2), (1, 2)]
