"""The worker analyses a study in memory-bounded batches, with the same result as all at once."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select, update
from web_support import db_url, dicom_bytes, ultrasound_pixels, web  # noqa: F401

from app.web.core.models import Analysis, Image, ImagePredictionRow, VerdictRow
from app.web.services.analysis_worker import AnalysisWorker, plan_batches

pytestmark = pytest.mark.slow


def test_batches_follow_the_study_order_and_fit_the_budget() -> None:
    sizes = [(100, 100), (100, 100), (300, 200), (10, 10), (1000, 1000), (10, 10)]
    # 7 bytes per pixel: 70,000 for a 100 × 100 image.
    assert plan_batches(sizes, 150_000) == [[0, 1], [2], [3], [4], [5]]
    assert plan_batches(sizes, 10**9) == [[0, 1, 2, 3, 4, 5]]
    assert plan_batches(sizes, 1) == [[0], [1], [2], [3], [4], [5]]
    assert plan_batches([], 1) == []


def _upload_study(h) -> int:
    """Six images of three sizes; image 1 unreadable in storage, image 4 with a box the model refuses."""
    uid = generate_uid()  # the same pixels each time, in a study of its own
    files = [
        (f"img{i}.dcm", dicom_bytes(ultrasound_pixels(i, *shape), study_uid=uid))
        for i, shape in enumerate([(240, 320), (240, 320), (480, 640), (240, 320), (300, 400), (240, 320)])
    ]
    response = h.upload(files)
    assert response.status_code == 202, response.text
    study_id = response.json()["study_id"]
    with h.runtime.session_factory() as db:
        images = list(db.scalars(select(Image).where(Image.study_id == study_id).order_by(Image.position)))
        h.runtime.store.path_for(images[1].storage_key).write_bytes(b"not a png any more")
        db.execute(update(Image).where(Image.id == images[4].id).values(scan_box=[0, 0, 0, 0]))
        db.commit()
    return study_id


def _outcome(h, study_id: int) -> dict[str, Any]:
    """What the analysis stored, with image ids replaced by study positions."""
    with h.runtime.session_factory() as db:
        analysis = db.scalar(select(Analysis).where(Analysis.study_id == study_id))
        assert analysis is not None and analysis.status == "done", analysis and analysis.error
        position = {
            image.id: image.position for image in db.scalars(select(Image).where(Image.study_id == study_id))
        }
        rows = db.scalars(select(ImagePredictionRow).where(ImagePredictionRow.analysis_id == analysis.id))
        predictions = {
            position[row.image_id]: (
                row.label,
                row.probabilities,
                row.ood,
                row.ood_score,
                row.quality_issue,
                row.used_in_verdict,
                row.error,
                row.heatmap_key is not None,
            )
            for row in rows
        }
        verdict = db.scalar(select(VerdictRow).where(VerdictRow.analysis_id == analysis.id))
        assert verdict is not None
        return {
            "predictions": dict(sorted(predictions.items())),
            "verdict": (
                verdict.label,
                verdict.probabilities,
                verdict.p_abnormal,
                verdict.reason,
                sorted(position[i] for i in verdict.support),
                verdict.n_used,
                verdict.n_excluded,
                verdict.n_total,
                verdict.excluded_by_reason,
            ),
        }


def _analyse_with_budget(h, budget: int) -> None:
    settings = h.settings.model_copy(update={"worker_batch_bytes": budget})
    assert AnalysisWorker(dataclasses.replace(h.runtime, settings=settings)).run_pending() == 1


def test_one_image_per_batch_gives_the_same_predictions_as_the_whole_study(web) -> None:  # noqa: F811
    h = web(worker_enabled=False, inference_batch_size=4)
    whole = _upload_study(h)
    _analyse_with_budget(h, 10**9)
    one_by_one = _upload_study(h)
    _analyse_with_budget(h, 1)
    pairs = _upload_study(h)
    _analyse_with_budget(h, 2 * 240 * 320 * 7)  # two of the small images, or one larger one

    expected = _outcome(h, whole)
    assert expected["predictions"][1][6] and "could not be analysed" in expected["predictions"][1][6]
    assert expected["predictions"][4][6] and expected["predictions"][0][0] is not None
    for study_id in (one_by_one, pairs):
        got = _outcome(h, study_id)
        assert got["verdict"][0] == expected["verdict"][0] and got["verdict"][4:] == expected["verdict"][4:]
        assert got["verdict"][1] == pytest.approx(expected["verdict"][1], abs=1e-6)
        assert got.keys() == expected.keys() and got["predictions"].keys() == expected["predictions"].keys()
        for position, row in expected["predictions"].items():
            other = got["predictions"][position]
            assert other[0] == row[0] and other[2:3] == row[2:3] and other[4:] == row[4:], position
            if row[1] is not None:
                assert other[1] == pytest.approx(row[1], abs=1e-6)
                assert other[3] == pytest.approx(row[3], abs=1e-5)
