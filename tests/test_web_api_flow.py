"""Upload → worker → verdict → diagnosis, through the JSON API, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from web_support import PASSWORD, db_url, study_files, web, zip_bytes  # noqa: F401

pytestmark = pytest.mark.slow


def test_upload_is_analysed_and_shows_verdict_and_heatmaps(web) -> None:  # noqa: F811
    h = web()
    response = h.upload(study_files(3), study_date="2025-03-14", gestational_age_weeks="21.5")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and len(body["studies"]) == 1 and body["rejected"] == []

    study = h.wait_for(body["study_id"])
    assert study["status"] == "done", study
    classes = list(h.runtime.class_names)
    assert study["verdict"]["label"] in [*classes, "indeterminate"]
    assert set(study["verdict"]["probabilities"]) == set(classes)
    assert (
        study["verdict"]["probabilities"] and abs(sum(study["verdict"]["probabilities"].values()) - 1) < 1e-6
    )
    assert study["verdict"]["p_abnormal"] == pytest.approx(1 - study["verdict"]["probabilities"]["normal"])
    # DICOM values win over nothing; the form's date/GA override for a single study.
    assert study["study_date"] == "2025-03-14" and study["gestational_age_weeks"] == 21.5
    assert study["patient"]["patient_id"] == "PID-4711"
    assert len(study["images"]) == 3
    for image in study["images"]:
        assert image["label"] in classes
        assert sum(image["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        png = h.client.get(image["heatmap_url"], headers=h.auth())
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        assert h.client.get(image["thumbnail_url"], headers=h.auth()).status_code == 200
    analysis = study["analysis"]
    assert analysis["model_name"] and analysis["provider"] and analysis["timings"]["total_s"] >= 0


def test_zip_upload_and_rejected_files_are_reported(web) -> None:  # noqa: F811
    h = web()
    files = [*study_files(2), ("notes.txt", b"not an image")]
    response = h.client.post(
        "/api/v1/studies",
        files=[("files", ("exam.zip", zip_bytes(files), "application/zip"))],
        headers=h.auth(),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert [r["filename"] for r in body["rejected"]] == ["exam.zip!notes.txt"] or any(
        "notes.txt" in r["filename"] for r in body["rejected"]
    )
    assert all("/tmp" not in r["filename"] and "upload-" not in r["filename"] for r in body["rejected"])
    assert body["studies"][0]["n_images"] == 2
    assert h.wait_for(body["study_id"])["status"] == "done"
