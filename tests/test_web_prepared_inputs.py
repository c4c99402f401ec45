"""Model inputs prepared at upload for this process's worker: the same inputs the worker prepares
from the stored PNG, bounded in memory, and never used for a blob that changed since the upload.
A worker without them (another process) gives the same predictions from the store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from web_support import db_url, dicom_bytes, ultrasound_pixels, web  # noqa: F401

from app.inference.prepare import PreparedImage, prepare_stored
from app.ingest.types import IngestedImage
from app.preprocess import PreprocessSpec
from app.web.core.models import Analysis, Image, ImagePredictionRow
from app.web.core.storage import ContentStore
from app.web.services.analysis_worker import AnalysisWorker
from app.web.services.prepared_inputs import ForWorker, PreparedInputs, cache_key
from app.web.services.uploads import _inputs_for_worker, _jsonable, _StoringSink, queue_study_analysis


def _prepared(n_bytes: int) -> PreparedImage:
    tensor = np.zeros(n_bytes // 4, np.float32)
    return PreparedImage(tensor, (0, 1, 0, 1), (1, 1), None, None, None)


def test_the_cache_is_bounded_and_each_stored_copy_is_taken_once() -> None:
    spec = PreprocessSpec()
    cache = PreparedInputs(budget_bytes=3 * (4000 + 512))
    keys = [cache_key(f"{i:064x}.png", spec, None, {"modality": "US"}) for i in range(5)]
    for key in keys:
        cache.put(key, _prepared(4000))
        assert cache.bytes_held <= cache.budget_bytes
    assert len(cache) == 3  # the two stored first were let go
    assert cache.take(keys[0]) is None and cache.take(keys[1]) is None
    assert cache.take(keys[4]) is not None and cache.take(keys[4]) is None
    # Two images of one upload with the same pixels share a key: each of them is answered.
    cache.put(keys[2], _prepared(4000))
    assert cache.take(keys[2]) is not None and cache.take(keys[2]) is not None
    assert cache.take(keys[2]) is None
    assert (cache.hits, cache.misses) == (3, 4)
    # Another box, spec or metadata is another key.
    assert cache.take(cache_key(f"{3:064x}.png", spec, (0, 5, 0, 5), {"modality": "US"})) is None
    assert cache.take(cache_key(f"{3:064x}.png", PreprocessSpec(interpolation="cubic"), None, {})) is None
    assert cache.take(keys[3]) is not None
    # An answer larger than the whole budget is not kept (it would push out everything else).
    cache.put(keys[0], _prepared(10**6))
    assert cache.take(keys[0]) is None and cache.bytes_held == 0


def _frames() -> list[IngestedImage]:
    rng = np.random.default_rng(3)
    frames = []
    for i in range(6):
        grey = ultrasound_pixels(i, 120 + 8 * i, 160)
        pixels = (
            np.repeat(grey[:, :, None], 3, axis=2) if i % 3 else rng.integers(0, 256, (130, 170, 3), np.uint8)
        )
        box = (10, 100, 20, 140) if i % 2 else None  # from DICOM regions, or detected
        metadata: dict[str, Any] = {
            "modality": "US" if i not in (3, 4) else "",
            "n_frames": 1,
            "shape": (2, 3),
        }
        frames.append(IngestedImage(f"f{i}.dcm", None, pixels, box, f"{i:064x}", metadata))
    # A box outside the image: the worker records that image's error; the upload leaves it alone.
    frames.append(IngestedImage("bad.dcm", None, frames[1].pixels, (0, 999, 0, 999), f"{99:064x}", {}))
    return frames


@pytest.mark.parametrize("interpolation", ["area", "linear", "cubic"])
def test_the_upload_prepares_what_the_worker_prepares_from_the_stored_png(
    tmp_path: Path, interpolation: str
) -> None:
    spec = PreprocessSpec(interpolation=interpolation)
    cache = PreparedInputs()
    store = ContentStore(tmp_path)
    sink = _StoringSink(store, threads=2, inputs=ForWorker(cache, spec, None))
    frames = _frames()
    for frame in frames:
        sink(frame)
    sink.finish()
    assert len(cache) == len(frames) - 1 and len(sink.keys) == len(frames)
    bad = frames.pop()
    bad_key, _ = sink.keys[(bad.sha256, bad.frame)]
    assert cache.take(cache_key(bad_key, spec, bad.scan_box, {})) is None
    for frame in frames:
        display_key, _ = sink.keys[(frame.sha256, frame.frame)]
        # What the worker's row will hold (a JSON column), and the worker's own path from the blob.
        metadata = _jsonable(frame.metadata)
        box = tuple(frame.scan_box) if frame.scan_box else None
        expected = prepare_stored(store.read_bytes(display_key), spec, box, metadata)
        got = cache.take(cache_key(display_key, spec, box, metadata))
        assert got is not None
        assert got.tensor.dtype == expected.tensor.dtype and got.tensor.shape == expected.tensor.shape
        assert got.tensor.tobytes() == expected.tensor.tobytes()  # bit-identical model input
        assert (got.box, got.image_shape, got.quality_issue, got.not_ultrasound) == (
            expected.box,
            expected.image_shape,
            expected.quality_issue,
            expected.not_ultrasound,
        )
        assert got.timings == {}  # the upload's seconds are the upload's (sink.model_input_s)
    assert sink.model_input_s > 0


def test_a_loop_s_frames_kept_for_playback_only_are_not_prepared(tmp_path: Path) -> None:
    from app.inference.analysis import frames_to_analyse, loop_key

    cache, spec = PreparedInputs(), PreprocessSpec()
    sink = _StoringSink(ContentStore(tmp_path), threads=1, inputs=ForWorker(cache, spec, 3))
    loop = ultrasound_pixels(7, 96, 128)
    frames = [
        IngestedImage("cine.dcm", f, np.roll(loop, f, axis=1), None, "c" * 64, {"frames_stored": 10})
        for f in range(10)
    ]
    still = IngestedImage("still.dcm", None, loop, None, "d" * 64, {})
    for image in [*frames, still]:
        sink(image)
    sink.finish()
    # The worker's own choice of frames (an independent reference): those, and the still, are kept.
    keys = [loop_key(image.sha256, image.frame) for image in frames]
    chosen = frames_to_analyse(keys, [image.frame for image in frames], 3)
    assert len(chosen) == 3 and len(cache) == 4
    for image in [*(frames[p] for p in chosen), still]:
        key, _ = sink.keys[(image.sha256, image.frame)]
        assert cache.take(cache_key(key, spec, None, _jsonable(image.metadata))) is not None
    assert len(cache) == 0


def _study(n: int, seed: int) -> list[tuple[str, bytes]]:
    from pydicom.uid import generate_uid

    uid = generate_uid()
    return [
        (f"img{i}.dcm", dicom_bytes(ultrasound_pixels(seed + i, 200 + 16 * i, 260), study_uid=uid))
        for i in range(n)
    ]


def _predictions(h: Any, analysis_id: int) -> dict[int, tuple[Any, ...]]:
    with h.runtime.session_factory() as db:
        rows = db.scalars(select(ImagePredictionRow).where(ImagePredictionRow.analysis_id == analysis_id))
        return {
            row.image_id: (
                row.label,
                row.probabilities,
                row.ood_score,
                row.quality_issue,
                row.error,
                row.cam_box,
            )
            for row in rows
        }


def _upload(h: Any, files: list[tuple[str, bytes]]) -> tuple[int, int]:
    response = h.upload(files)
    assert response.status_code == 202, response.text
    study_id = response.json()["study_id"]
    with h.runtime.session_factory() as db:
        analysis_id = db.scalar(select(Analysis.id).where(Analysis.study_id == study_id))
    assert analysis_id is not None
    return study_id, analysis_id


@pytest.mark.slow
def test_the_worker_takes_the_upload_s_inputs_and_another_process_s_worker_agrees(web) -> None:  # noqa: F811
    h = web(worker_enabled=False, inference_batch_size=2)
    assert _inputs_for_worker(h.runtime) is None  # no worker in this process: nothing prepared
    here = AnalysisWorker(h.runtime)
    h.runtime.worker = here  # the in-process worker (not started: the test runs it)
    card = h.runtime.inference.card
    expected = ForWorker(here.prepared_inputs, h.runtime.inference.spec, card.cine_rule.max_analysed_frames)
    assert _inputs_for_worker(h.runtime) == expected
    try:
        files = _study(5, seed=20)
        study_id, first = _upload(h, files)
        assert len(here.prepared_inputs) == 5
        assert here.process(first)
        assert (here.prepared_inputs.hits, here.prepared_inputs.misses) == (5, 0)
        assert len(here.prepared_inputs) == 0 and here.prepared_inputs.bytes_held == 0

        # The same study again, by a worker that has nothing in memory (as another process).
        with h.runtime.session_factory() as db:
            second = queue_study_analysis(db, study_id)
            db.commit()
        assert second is not None and second != first
        elsewhere = AnalysisWorker(h.runtime)
        try:
            assert elsewhere.process(second)
        finally:
            elsewhere.close()
        assert (elsewhere.prepared_inputs.hits, elsewhere.prepared_inputs.misses) == (0, 5)
        from_memory, from_store = _predictions(h, first), _predictions(h, second)
        assert from_memory.keys() == from_store.keys() and len(from_memory) == 5
        for image_id, row in from_memory.items():
            other = from_store[image_id]
            assert row[0] == other[0] and row[3:] == other[3:] and row[4] is None
            assert row[1] == pytest.approx(other[1], abs=1e-6)
            assert row[2] == pytest.approx(other[2], abs=1e-5)

        # The originals were moved, not copied, into the store: the same bytes under their hash.
        with h.runtime.session_factory() as db:
            sources = list(db.scalars(select(Image.source_key).where(Image.study_id == study_id)))
        assert sorted(h.runtime.store.read_bytes(key) for key in sources) == sorted(data for _, data in files)
        for key in sources:
            assert hashlib.sha256(h.runtime.store.read_bytes(key)).hexdigest() == key.split(".")[0]
    finally:
        here.close()


@pytest.mark.slow
def test_a_display_copy_changed_since_the_upload_is_not_analysed_from_memory(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    here = AnalysisWorker(h.runtime)
    h.runtime.worker = here
    try:
        study_id, analysis_id = _upload(h, _study(3, seed=40))
        with h.runtime.session_factory() as db:
            images = list(
                db.scalars(select(Image).where(Image.study_id == study_id).order_by(Image.position))
            )
        h.runtime.store.path_for(images[1].storage_key).write_bytes(b"not a png any more")
        assert here.process(analysis_id)
        rows = _predictions(h, analysis_id)
        assert rows[images[1].id][4] is not None and "could not be analysed" in rows[images[1].id][4]
        assert rows[images[0].id][4] is None and rows[images[2].id][4] is None
        assert here.prepared_inputs.hits == 3 and len(here.prepared_inputs) == 0  # 1 taken, not used
    finally:
        here.close()
