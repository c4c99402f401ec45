"""The analysis worker draws nothing: heatmaps are drawn from the stored map on first view (and
are the eager drawing byte for byte), studies queued together share batches with the same
results as one at a time, and the preparing process pool agrees with the worker's own thread."""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import undefer
from web_support import db_url, dicom_bytes, ultrasound_pixels, web  # noqa: F401

from app.inference.render import encode_png, heatmap_rgba
from app.ingest.types import IngestedImage
from app.web.core.models import Analysis, Image, ImagePredictionRow, VerdictRow
from app.web.services.analysis_worker import AnalysisWorker

pytestmark = pytest.mark.slow


def _upload(h, seed: int, n: int = 3) -> int:
    uid = generate_uid()
    files = [
        (f"s{seed}-{i}.dcm", dicom_bytes(ultrasound_pixels(seed * 10 + i, 240, 320), study_uid=uid))
        for i in range(n)
    ]
    response = h.upload(files)
    assert response.status_code == 202, response.text
    return int(response.json()["study_id"])


def _analysis_id(h, study_id: int) -> int:
    with h.runtime.session_factory() as db:
        return int(db.scalar(select(Analysis.id).where(Analysis.study_id == study_id)))


def _outcome(h, study_id: int) -> dict[str, Any]:
    with h.runtime.session_factory() as db:
        analysis = db.scalar(select(Analysis).where(Analysis.study_id == study_id))
        assert analysis is not None and analysis.status == "done", analysis and analysis.error
        position = {i.id: i.position for i in db.scalars(select(Image).where(Image.study_id == study_id))}
        rows = db.scalars(select(ImagePredictionRow).where(ImagePredictionRow.analysis_id == analysis.id))
        predictions = {
            position[r.image_id]: (r.label, r.probabilities, r.cam, r.cam_box, r.exclusion) for r in rows
        }
        verdict = db.scalar(select(VerdictRow).where(VerdictRow.analysis_id == analysis.id))
        assert verdict is not None
        return {
            "predictions": dict(sorted(predictions.items())),
            "verdict": (verdict.label, verdict.probabilities, verdict.n_used, verdict.n_total),
            "timings": dict(analysis.timings or {}),
        }


def _same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["verdict"][0] == expected["verdict"][0] and got["verdict"][2:] == expected["verdict"][2:]
    assert got["verdict"][1] == pytest.approx(expected["verdict"][1], abs=1e-6)
    assert got["predictions"].keys() == expected["predictions"].keys()
    for position, (label, probabilities, cam, box, exclusion) in expected["predictions"].items():
        other = got["predictions"][position]
        assert (other[0], other[3], other[4]) == (label, box, exclusion), position
        assert other[1] == pytest.approx(probabilities, abs=1e-6)
        np.testing.assert_allclose(np.asarray(other[2]), np.asarray(cam), atol=1e-5)


def test_the_heatmap_is_drawn_on_first_view_and_is_the_eager_drawing(web) -> None:  # noqa: F811
    h = web()
    study_id = _upload(h, 1)
    assert h.wait_for(study_id)["status"] == "done"
    with h.runtime.session_factory() as db:
        rows = list(
            db.scalars(
                select(ImagePredictionRow)
                .options(undefer(ImagePredictionRow.cam))
                .order_by(ImagePredictionRow.image_id)
            )
        )
        images = {i.id: i for i in db.scalars(select(Image))}
    assert rows and all(r.heatmap_key is None and r.cam is not None and r.cam_box for r in rows)
    # The worker drew nothing: the study's blobs are display PNGs, thumbnails and source files.
    keys_before = h.stored_keys()
    assert len(keys_before) == 3 * len(rows)

    engine = h.runtime.inference
    body = h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth()).json()
    for image_out, row in zip(body["images"], rows, strict=True):
        image = images[row.image_id]
        response = h.client.get(image_out["heatmap_url"], headers=h.auth())
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        # The independent path: the engine's own full-size map of the stored display image.
        stored = h.runtime.store.read_bytes(image.storage_key)
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(stored, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ingested = IngestedImage(image.filename, image.frame, rgb, None, image.source_sha256, {})
        eager = engine.predict([ingested])[0]
        assert list(eager.scan_box) == row.cam_box
        assert response.content == encode_png(heatmap_rgba(eager.cam))
        again = h.client.get(image_out["heatmap_url"], headers=h.auth())
        assert again.content == response.content
    with h.runtime.session_factory() as db:
        drawn = list(db.scalars(select(ImagePredictionRow).order_by(ImagePredictionRow.image_id)))
    assert all(r.heatmap_key for r in drawn)
    # One heatmap blob per image, stored once however often it is viewed.
    assert h.stored_keys() - keys_before == {r.heatmap_key for r in drawn}

    thumbnail = h.client.get(body["images"][0]["thumbnail_url"], headers=h.auth())
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    original = h.client.get(body["images"][0]["image_url"], headers=h.auth())
    assert original.headers["content-type"] == "image/png"


def test_studies_analysed_together_match_one_at_a_time_with_or_without_the_pool(web) -> None:  # noqa: F811
    h = web(worker_enabled=False, inference_batch_size=4)
    alone = [_upload(h, seed) for seed in (1, 2, 3)]
    in_thread = dataclasses.replace(
        h.runtime, settings=h.settings.model_copy(update={"worker_prepare_processes": 0})
    )
    worker = AnalysisWorker(in_thread)
    for study_id in alone:
        assert worker.process(_analysis_id(h, study_id))
    worker.close()

    together = [_upload(h, seed) for seed in (1, 2, 3)]
    pooled = dataclasses.replace(
        h.runtime, settings=h.settings.model_copy(update={"worker_prepare_processes": 2})
    )
    worker = AnalysisWorker(pooled)
    try:
        # Three studies of three images in batches of four: every batch mixes studies.
        assert worker.process_many([_analysis_id(h, study_id) for study_id in together])
    finally:
        worker.close()
    for one, batched in zip(alone, together, strict=True):
        expected, got = _outcome(h, one), _outcome(h, batched)
        _same(got, expected)
        for stage in ("load_s", "decode_s", "crop_s", "preprocess_s", "inference_s", "db_s", "total_s"):
            assert got["timings"][stage] > 0, stage
