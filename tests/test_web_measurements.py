"""Biometry and the ISUOG checklist through the JSON API, on a real database (SQLite and
PostgreSQL): lengths in millimetres from the DICOM region's PhysicalDeltaX/Y (cm), refused
without a calibration (PNG) or outside the region, audited, and carried into the PDF report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ingest_support import dicom_bytes, make_us_dataset
from pdf_text_support import pdf_text
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from web_support import db_url, png_bytes, ultrasound_pixels, web  # noqa: F401

DELTA_X_CM, DELTA_Y_CM = 0.02, 0.03  # anisotropic on purpose
REGION = (20, 10, 299, 229)  # MinX0, MinY0, MaxX1, MaxY1 (inclusive)


def _region() -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = REGION[0], REGION[1]
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = REGION[2], REGION[3]
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX, region.PhysicalDeltaY = DELTA_X_CM, DELTA_Y_CM
    return region


def _calibrated_study(n: int = 2) -> list[tuple[str, bytes]]:
    uid = generate_uid()
    files = []
    for i in range(n):
        ds = make_us_dataset(
            ultrasound_pixels(i), patient_id="PID-BIO", patient_name="Bio^Metry", study_uid=uid
        )
        ds.SequenceOfUltrasoundRegions = Sequence([_region()])
        # Gestational age in free text, which ingestion reads: Z-scores need it.
        ds.ImageComments = "GA 22w0d"
        files.append((f"bio{i}.dcm", dicom_bytes(ds)))
    return files


def _audit_actions(h, study_id: int) -> list[str]:
    return [
        e["action"] for e in h.client.get(f"/api/v1/studies/{study_id}/audit", headers=h.auth("admin")).json()
    ]


def test_measurements_in_millimetres_audited_and_in_the_report(web) -> None:  # noqa: F811
    h = web()
    upload = h.upload(_calibrated_study())
    assert upload.status_code == 202, upload.text
    study_id = upload.json()["study_id"]
    study = h.wait_for(study_id)
    assert study["status"] == "done"
    image = study["images"][0]
    calibration = image["calibration"]
    assert calibration["mm_per_px_x"] == pytest.approx(DELTA_X_CM * 10)
    assert calibration["mm_per_px_y"] == pytest.approx(DELTA_Y_CM * 10)
    assert calibration["region"] == [REGION[1], REGION[3] + 1, REGION[0], REGION[2] + 1]
    url = f"/api/v1/studies/{study_id}/measurements"

    a, b = (50.0, 40.0), (170.5, 120.0)
    made = h.client.post(
        url,
        json={"image_id": image["id"], "name": "ATRIUM", "kind": "distance", "points": [a, b]},
        headers=h.auth(),
    )
    assert made.status_code == 201, made.text
    body = made.json()
    expected = math.hypot((b[0] - a[0]) * DELTA_X_CM * 10, (b[1] - a[1]) * DELTA_Y_CM * 10)
    assert body["value_mm"] == pytest.approx(expected, rel=1e-12)
    assert body["gestational_age_weeks"] == pytest.approx(22.0)
    assert body["z_score"] is not None and body["within_limits"] is False  # > 10 mm: ventriculomegaly
    assert body["created_by"] == "rad" and "Napolitano" in body["reference"]

    ellipse = h.client.post(
        url,
        json={
            "image_id": image["id"],
            "name": "HC",
            "kind": "ellipse",
            "points": [[60, 100], [260, 100], [160, 40]],
        },
        headers=h.auth(),
    )
    assert ellipse.status_code == 201, ellipse.text
    # Axis-aligned: semi-axes 100 px × 0.2 mm and 60 px × 0.3 mm = 20 mm and 18 mm.
    from scipy.special import ellipe

    assert ellipse.json()["value_mm"] == pytest.approx(4 * 20 * ellipe(1 - (18 / 20) ** 2), rel=1e-9)
    assert ellipse.json()["axes_mm"] == pytest.approx([40.0, 36.0])

    refusals = [
        ({"image_id": image["id"], "name": "HC", "kind": "distance", "points": [a, b]}, 422, "ellipse"),
        ({"image_id": image["id"], "name": "BPD", "kind": "distance", "points": [a, (5, 5)]}, 422, "outside"),
        ({"image_id": image["id"], "name": "BPD", "kind": "distance", "points": [a, a]}, 422, "no length"),
        ({"image_id": image["id"], "name": "BPD", "kind": "distance", "points": [a, b, b]}, 422, "2 points"),
        ({"image_id": image["id"], "name": "XYZ", "kind": "distance", "points": [a, b]}, 422, ""),
        ({"image_id": 10**9, "name": "BPD", "kind": "distance", "points": [a, b]}, 404, "not an image"),
    ]
    for payload, status, words in refusals:
        response = h.client.post(url, json=payload, headers=h.auth())
        assert response.status_code == status, (payload, response.text)
        assert words in str(response.json()["detail"])

    listed = h.client.get(url, headers=h.auth()).json()
    assert [m["name"] for m in listed] == ["ATRIUM", "HC"]

    # The checklist: unknown items refused, answers kept, the newest save current.
    checklist_url = f"/api/v1/studies/{study_id}/checklist"
    assert (
        h.client.put(checklist_url, json={"items": {"brain_stem": "normal"}}, headers=h.auth()).status_code
        == 422
    )
    saved = h.client.put(
        checklist_url,
        json={
            "items": {"cavum_septi_pellucidi": "normal", "lateral_ventricles": "abnormal"},
            "comment": "wide atria",
        },
        headers=h.auth(),
    )
    assert saved.status_code == 200, saved.text
    items = {i["key"]: i["answer"] for i in h.client.get(checklist_url, headers=h.auth()).json()["items"]}
    assert items["cavum_septi_pellucidi"] == "normal" and items["lateral_ventricles"] == "abnormal"
    assert items["spine"] is None

    report = h.client.get(f"/api/v1/studies/{study_id}/report.pdf", headers=h.auth())
    assert report.status_code == 200
    text = pdf_text(report.content)
    assert "ISUOG basic CNS examination" in text and "wide atria" in text
    assert "Lateral ventricle atrium (ATRIUM)" in text and f"{body['value_mm']:.1f} mm" in text
    assert "OUTSIDE limits" in text

    other = h.client.delete(f"/api/v1/measurements/{body['id']}", headers=h.auth("rad2"))
    assert other.status_code == 403 and "only the reader" in other.json()["detail"]
    gone = h.client.delete(f"/api/v1/measurements/{body['id']}", headers=h.auth())
    assert gone.status_code == 204
    assert h.client.delete(f"/api/v1/measurements/{body['id']}", headers=h.auth()).status_code == 404
    assert [m["name"] for m in h.client.get(url, headers=h.auth()).json()] == ["HC"]

    actions = _audit_actions(h, study_id)
    for action in (
        "measurement.create",
        "measurement.list",
        "measurement.delete",
        "checklist.save",
        "checklist.view",
    ):
        assert action in actions, action
    assert actions.count("measurement.create") == 2


def test_an_image_without_calibration_cannot_be_measured(web) -> None:  # noqa: F811
    h = web()
    upload = h.upload([("scan.png", png_bytes(ultrasound_pixels(3)))], patient_id="PNG-1")
    assert upload.status_code == 202, upload.text
    study_id = upload.json()["study_id"]
    image = h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth()).json()["images"][0]
    assert image["calibration"] is None
    response = h.client.post(
        f"/api/v1/studies/{study_id}/measurements",
        json={"image_id": image["id"], "name": "BPD", "kind": "distance", "points": [[10, 10], [60, 60]]},
        headers=h.auth(),
    )
    assert response.status_code == 422
    assert "no physical scale" in response.json()["detail"]
    assert h.client.get(f"/api/v1/studies/{study_id}/measurements", headers=h.auth()).json() == []


def test_the_cine_limit_keeps_the_first_frames_in_order(web) -> None:  # noqa: F811
    h = web(max_cine_frames=5)
    frames = np.stack([ultrasound_pixels(10 + i) for i in range(9)])
    ds = make_us_dataset(frames[0], patient_id="PID-CINE", patient_name="Cine^Loop")
    ds.NumberOfFrames = 9
    ds.FrameTime = 33.3
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.SequenceOfUltrasoundRegions = Sequence([_region()])
    upload = h.upload([("loop.dcm", dicom_bytes(ds))])
    assert upload.status_code == 202, upload.text
    study = h.wait_for(upload.json()["study_id"])
    stored = sorted(study["images"], key=lambda i: i["frame"])
    assert [i["frame"] for i in stored] == [0, 1, 2, 3, 4]
    assert {(i["n_frames"], i["frames_stored"]) for i in stored} == {(9, 5)}
    assert stored[0]["frame_time_ms"] == pytest.approx(33.3)
    assert len({i["loop"] for i in stored}) == 1
    # One loop: one image of the verdict, whatever its frame count.
    assert study["verdict"]["n_total"] == 1
