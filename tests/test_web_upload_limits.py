"""Uploads under decode budgets, with damaged ZIP members and frames streamed to storage."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from ingest_support import dicom_bytes as encode_dicom
from ingest_support import make_us_dataset
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit
from sqlalchemy import select
from web_support import db_url, study_files, ultrasound_pixels, web, zip_bytes  # noqa: F401

from app.web.core.models import BLOB_KEY_COLUMNS

pytestmark = pytest.mark.slow


def jpeg_cine(
    frames: list[bytes], rows: int = 240, columns: int = 320, patient_id: str = "PID-CINE"
) -> bytes:
    ds = make_us_dataset(np.zeros((8, 8), np.uint8), patient_id=patient_id)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns = rows, columns
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    return encode_dicom(ds)


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def referenced_keys(h) -> set[str]:
    with h.runtime.session_factory() as db:
        return {key for column in BLOB_KEY_COLUMNS for key in db.scalars(select(column)) if key}


def test_a_hostile_cine_is_refused_with_the_header_values(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    hostile = jpeg_cine([b"\xff\xd8 junk \xff\xd9"] * 8, rows=6000, columns=6000)
    response = h.upload([("cine.dcm", hostile)])
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "cine.dcm: the image is too large to decode" in detail
    assert "NumberOfFrames × Rows × Columns × SamplesPerPixel × bytes per sample = 8 × 6000 × 6000" in detail
    assert h.stored_keys() == set() and not any(h.settings.upload_tmp_dir.iterdir())


def test_the_decode_budget_setting_reaches_ingestion(web) -> None:  # noqa: F811
    # 240 × 320 × 1 byte = 76,800 bytes per image: over a 50,000-byte budget.
    h = web(worker_enabled=False, max_decode_bytes=50_000)
    response = h.upload(study_files(1))
    assert response.status_code == 422 and "above the decode budget of" in response.json()["detail"]
    assert h.upload(study_files(1, seed=3)).status_code == 422
    roomy = web(worker_enabled=False, max_decode_bytes=80_000)
    assert roomy.upload(study_files(1, seed=4)).status_code == 202


def test_a_damaged_zip_member_is_reported_and_the_rest_imported(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    archive = bytearray(zip_bytes(study_files(3)))
    with zipfile.ZipFile(io.BytesIO(bytes(archive))) as zf:
        info = zf.getinfo("img1.dcm")
    archive[info.header_offset : info.header_offset + 4] = b"XXXX"  # its local header
    response = h.client.post(
        "/api/v1/studies",
        files=[("files", ("exam.zip", bytes(archive), "application/zip"))],
        headers=h.auth(),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["studies"][0]["n_images"] == 2
    assert [r["filename"] for r in body["rejected"]] == ["exam.zip!img1.dcm"]
    assert "damaged inside the ZIP archive" in body["rejected"][0]["reason"]


def test_frames_stored_before_a_corrupt_frame_leave_no_blob(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    frames = [jpeg(ultrasound_pixels(1)), jpeg(ultrasound_pixels(2)), b"\xff\xd8 junk \xff\xd9"]
    response = h.upload([("cine.dcm", jpeg_cine(frames)), *study_files(1, seed=7)])
    assert response.status_code == 202, response.text
    body = response.json()
    assert [r["filename"] for r in body["rejected"]] == ["cine.dcm"]
    assert body["studies"][0]["n_images"] == 1
    # The cine's first two frames were stored as they were decoded, and removed with their file.
    assert h.stored_keys() == referenced_keys(h)
    assert len(h.stored_keys()) == 3  # the good image: display PNG, thumbnail, source file


def test_a_streamed_cine_is_stored_frame_by_frame(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    frames = [ultrasound_pixels(seed) for seed in range(4)]
    ds = make_us_dataset(np.stack(frames)[0], patient_id="PID-CINE")
    ds.NumberOfFrames = 4
    ds.PixelData = np.stack(frames).tobytes()
    response = h.upload([("cine.dcm", encode_dicom(ds))])
    assert response.status_code == 202, response.text
    study = h.client.get(f"/api/v1/studies/{response.json()['study_id']}", headers=h.auth()).json()
    assert [image["frame"] for image in study["images"]] == [0, 1, 2, 3]
    for image, expected in zip(study["images"], frames, strict=True):
        png = h.client.get(image["image_url"], headers=h.auth())
        assert png.status_code == 200
        stored = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
        np.testing.assert_array_equal(stored, np.dstack([expected] * 3))
