"""analyse_study: batched scoring with per-image fallback, failure reasons, and the verdict of the rest.

The bad image is one the engine really cannot take: a degenerate scan-area box (what a
stored image record can carry, and what the web worker's retry was written for). Ingestion
never produces one from a file (app.ingest.regions drops regions thinner than 16 pixels and
clips the rest to the image), so the box is set on an ingested image here.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.inference.analysis import StudyAnalysis, analyse_study
from app.inference.engine import InferenceEngine
from app.inference.pipeline import PredictionReport, analyse_patient, model_summary
from app.ingest import IngestedImage, IngestedStudy, ingest_paths
from tests.ingest_support import phantom

DEGENERATE_BOX = (0, 0, 0, 0)
SECRET_NAME = "Doe-Secret-424242"


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> InferenceEngine:
    return InferenceEngine(tiny_model_dir, device="cpu", batch_size=4, threads=1)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> IngestedStudy:
    """Five real phantom exports of one patient, ingested from disk."""
    folder = tmp_path_factory.mktemp("analysis") / SECRET_NAME
    folder.mkdir()
    for seed in range(5):
        cv2.imwrite(str(folder / f"{seed}.png"), phantom(seed=seed))
    (study,) = ingest_paths([folder]).studies
    assert len(study.images) == 5
    return study


def spoiled(images: list[IngestedImage], *positions: int) -> list[IngestedImage]:
    return [replace(im, scan_box=DEGENERATE_BOX) if i in positions else im for i, im in enumerate(images)]


def reference_mean(engine: InferenceEngine, images: list[IngestedImage]) -> np.ndarray:
    """Mean softmax of the images scored one at a time, straight from the model's logits."""
    rows = []
    for image in images:
        x, _ = engine.preprocess(image)
        logits, _ = engine.run_batch(x[None])
        z = logits[0].astype(np.float64)
        rows.append(np.exp(z - z.max()) / np.exp(z - z.max()).sum())
    return np.mean(rows, axis=0)


def test_the_degenerate_box_really_breaks_a_batch(engine: InferenceEngine, study: IngestedStudy) -> None:
    with pytest.raises(ValueError, match="crop box"):
        engine.predict(spoiled(study.images, 1))


def test_one_bad_image_fails_alone_and_the_others_give_the_verdict(
    engine: InferenceEngine, study: IngestedStudy
) -> None:
    images = spoiled(study.images, 1)
    result = analyse_study(engine, images)
    assert set(result.errors) == {1}
    assert "could not be analysed" in result.errors[1] and "crop box" in result.errors[1]
    assert result.predictions[1] is None and result.n_failed == 1
    assert [i for i, _ in result.analysed] == [0, 2, 3, 4]
    good = [images[i] for i in (0, 2, 3, 4)]
    expected = reference_mean(engine, good)
    verdict = result.verdict
    assert verdict.aggregation == engine.card.aggregation and verdict.n_used == 4
    assert [verdict.probabilities[c] for c in engine.classes] == pytest.approx(expected.tolist(), abs=1e-6)
    assert verdict.label == engine.classes[int(np.argmax(expected))]
    # support names positions in the study, not in the list of analysed images.
    assert sorted(verdict.support) == [0, 2, 3, 4]
    for position, prediction in result.analysed:
        alone = engine.predict([images[position]])[0]
        np.testing.assert_allclose(prediction.probabilities, alone.probabilities, atol=1e-6)


def test_a_failure_in_one_batch_leaves_the_other_batches_batched(
    tiny_model_dir: Path, study: IngestedStudy
) -> None:
    small_batches = InferenceEngine(tiny_model_dir, device="cpu", batch_size=2, threads=1)
    result = analyse_study(small_batches, spoiled(study.images, 4))
    assert set(result.errors) == {4} and len(result.analysed) == 4
    assert sorted(result.verdict.support) == [0, 1, 2, 3]


def test_vote_support_is_in_study_positions(engine: InferenceEngine, study: IngestedStudy) -> None:
    result = analyse_study(engine, spoiled(study.images, 0, 2), aggregation="vote")
    verdict = result.verdict
    assert verdict.aggregation == "vote" and verdict.votes is not None
    assert sum(verdict.votes.values()) == 3 and sorted(verdict.support) == [1, 3, 4]
    top = [result.predictions[i].label for i in (1, 3, 4)]  # type: ignore[union-attr]
    assert verdict.votes[verdict.label] == max(top.count(c) for c in set(top))


def test_a_study_whose_images_all_fail_is_indeterminate_with_the_first_reason(
    engine: InferenceEngine, study: IngestedStudy
) -> None:
    result = analyse_study(engine, spoiled(study.images[:2], 0, 1))
    assert result.analysed == [] and set(result.errors) == {0, 1}
    verdict = result.verdict
    assert verdict.indeterminate and verdict.p_abnormal is None and verdict.n_used == 0
    assert verdict.reason is not None
    assert (
        verdict.reason.startswith("none of the 2 image(s) could be analysed") and "crop box" in verdict.reason
    )


def test_an_empty_study_is_indeterminate(engine: InferenceEngine) -> None:
    result = analyse_study(engine, [])
    assert result.verdict.indeterminate and result.errors == {} and result.predictions == ()


def test_unknown_aggregation_is_refused_before_scoring(engine: InferenceEngine, study: IngestedStudy) -> None:
    with pytest.raises(ValueError, match="unknown aggregation"):
        analyse_study(engine, study.images, aggregation="median")


def test_later_failures_recompute_the_verdict(engine: InferenceEngine, study: IngestedStudy) -> None:
    result = analyse_study(engine, study.images)
    assert result.errors == {} and result.verdict.n_used == 5
    fewer = result.with_failures({2: "heatmap could not be stored"})
    assert fewer.errors == {2: "heatmap could not be stored"} and fewer.predictions[2] is None
    assert sorted(fewer.verdict.support) == [0, 1, 3, 4]
    expected = reference_mean(engine, [study.images[i] for i in (0, 1, 3, 4)])
    assert [fewer.verdict.probabilities[c] for c in engine.classes] == pytest.approx(
        expected.tolist(), abs=1e-6
    )
    assert result.with_failures({}) is result


def test_failures_are_logged_without_file_names(
    engine: InferenceEngine, study: IngestedStudy, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        analyse_study(engine, spoiled(study.images, 3))
    # The spoiled image fails while it is prepared, alone: its batch still runs batched.
    assert "image 3 of the study could not be prepared" in caplog.text
    assert "retrying them one by one" not in caplog.text
    assert SECRET_NAME not in caplog.text


def test_predict_report_lists_the_failed_image_with_its_reason(
    engine: InferenceEngine, study: IngestedStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.inference.cli import print_summary

    bad = replace(study, images=spoiled(study.images, 2))
    report = PredictionReport(model=model_summary(engine), provider=engine.provider)
    report.patients.append(analyse_patient(bad, engine))
    assert isinstance(report.patients[0].analysis, StudyAnalysis)
    written = report.write_overlays(tmp_path / "overlays")
    assert sorted(i for _, i in written) == [0, 1, 3, 4]
    document = report.to_json(written)
    (patient,) = document["patients"]
    assert patient["verdict"]["n_failed"] == 1 and patient["verdict"]["n_used"] == 4
    failed = patient["images"][2]
    assert failed["label"] is None and failed["overlay"] is None and "crop box" in failed["error"]
    assert all(
        image["error"] is None and image["label"] for k, image in enumerate(patient["images"]) if k != 2
    )
    print_summary(document)
    out = capsys.readouterr().out
    assert "4 of 5 image(s) used, 1 left out (1 could not be analysed)" in out and "crop box" in out
    assert f"failed: 2.png: {failed['error']}" in out and SECRET_NAME not in out


def test_images_known_to_have_failed_are_counted_in_the_study(
    engine: InferenceEngine, study: IngestedStudy
) -> None:
    """The web worker's case: image 1 could not be read back from storage."""
    images: list[IngestedImage | None] = list(study.images)
    images[1] = None
    result = analyse_study(engine, images, failures={1: "this image could not be analysed: unreadable"})
    assert result.errors == {1: "this image could not be analysed: unreadable"}
    assert result.predictions[1] is None and [i for i, _ in result.analysed] == [0, 2, 3, 4]
    verdict = result.verdict
    assert (verdict.n_used, verdict.n_excluded, verdict.n_total) == (4, 1, 5)
    assert verdict.excluded_by_reason == {"failed": 1} and 1 not in verdict.support
    with pytest.raises(ValueError, match="needs its reason"):
        analyse_study(engine, images)
