"""The view_scope OOD signal: non-CNS fetal views (abdomen, femur, heart, face) as a known-unknown
class in feature space. Pure numpy in serving, checked against scipy; calibrated by
`fetalcns calibrate-ood --other-views`; its reason "an ultrasound view this model was not trained on"."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from app.cli import main
from app.inference.aggregate import EXCLUSION_WORDS, VIEW, aggregate, describe_exclusions
from app.inference.analysis import analyse_study, exclusion_key
from app.inference.engine import VIEW_REASON, ImagePrediction, InferenceEngine
from app.inference.mahalanobis import (
    fit_class_gaussians,
    fit_view_scope,
    load_class_gaussians,
    load_view_scope,
    save_view_scope,
    view_scope_score,
)
from app.inference.ood_calibration import CalibrationError, calibrate_ood, discover_other_views
from app.ingest.types import IngestedImage
from app.modelcard import ModelCardError, load_model_card, sha256_of, validate_card
from app.training.data import read_rgb


def clusters(n: int = 200, k: int = 8, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(scale=4.0, size=(classes, k))
    return centres[labels] + rng.normal(size=(n, k)) @ rng.normal(size=(k, k)), labels


def test_score_is_cns_distance_minus_other_view_distance_as_scipy_computes_them() -> None:
    x, y = clusters()
    rng = np.random.default_rng(1)
    other = rng.normal(loc=6.0, size=(30, 8))
    planes = ["femur"] * 10 + ["abdomen"] * 20
    gaussians = fit_class_gaussians(x, y, 3)
    params = fit_view_scope(gaussians, other, planes)
    assert params.planes == ("abdomen", "femur")  # sorted
    np.testing.assert_allclose(params.other_means[0], other[10:].mean(axis=0))
    np.testing.assert_allclose(params.other_means[1], other[:10].mean(axis=0))
    probe = np.vstack([x[:5], other[:5]])
    vi = gaussians.precision
    expected = [
        min(mahalanobis(row, m, vi) for m in gaussians.means)
        - min(mahalanobis(row, m, vi) for m in params.other_means)
        for row in probe
    ]
    np.testing.assert_allclose(view_scope_score(params, probe), expected, rtol=1e-9, atol=1e-9)
    # CNS rows lie nearer a CNS class, other views nearer their own mean.
    scores = view_scope_score(params, probe)
    assert (scores[:5] < 0).all() and (scores[5:] > 0).all()
    with pytest.raises(ValueError, match="width"):
        view_scope_score(params, np.zeros((1, 7)))


def test_parameters_round_trip_and_a_broken_file_is_refused(tmp_path: Path) -> None:
    x, y = clusters()
    params = replace(
        fit_view_scope(fit_class_gaussians(x, y, 3), x[:4] + 9.0, ["a", "b", "a", "c"]), radius=2.5
    )
    loaded = load_view_scope(save_view_scope(tmp_path / "v.npz", params))
    assert loaded.planes == ("a", "b", "c") and loaded.radius == 2.5
    probe = np.vstack([loaded.other_means[0] + 0.01, loaded.other_means[0] + 100.0])
    expected = [
        min(mahalanobis(row, m, loaded.precision) for m in loaded.other_means) <= 2.5 for row in probe
    ]
    assert loaded.within_radius(probe).tolist() == expected == [True, False]
    for name in ("means", "other_means", "precision"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(params, name))
    np.savez(tmp_path / "bad.npz", means=params.means, precision=params.precision)
    with pytest.raises(ValueError, match="lacks other_means, planes"):
        load_view_scope(tmp_path / "bad.npz")


def _prediction(signals: tuple[str, ...], quality: str | None = None, near: bool = True) -> ImagePrediction:
    return ImagePrediction(
        classes=("a", "normal"),
        probabilities=np.array([0.9, 0.1]),
        label="a",
        label_index=0,
        logits=np.zeros(2),
        class_cams=np.zeros((2, 2, 2)),
        scan_box=(0, 4, 0, 4),
        image_shape=(4, 4),
        ood=bool(signals),
        ood_score=0.0,
        quality_issue=quality,
        ood_signals=signals,
        near_other_view=near,
    )


def test_reason_and_key_when_the_view_signal_fires() -> None:
    view = _prediction(("energy", "view_scope"))
    assert view.exclusion_reason == VIEW_REASON == "an ultrasound view this model was not trained on"
    assert exclusion_key(view) == VIEW
    # Far from every CNS class too (noise, another modality): the generic reason, not "a view".
    far = _prediction(("mahalanobis", "view_scope"))
    assert "out of distribution" in (far.exclusion_reason or "") and exclusion_key(far) == "ood"
    assert exclusion_key(_prediction(("energy",))) == "ood"
    # Past the radius of every view mean (a photograph that still lies nearer a view than a CNS class).
    assert exclusion_key(_prediction(("view_scope",), near=False)) == "ood"
    assert exclusion_key(_prediction(("view_scope",), quality="blank or near-uniform frame")) == "quality"
    assert EXCLUSION_WORDS[VIEW] == VIEW_REASON
    verdict = aggregate([np.array([0.9, 0.1])] * 3, ("a", "normal"), "normal", reasons=[VIEW, VIEW, None])
    assert verdict.indeterminate and verdict.excluded_by_reason == {VIEW: 2}
    assert describe_exclusions(verdict.excluded_by_reason) == f"2 {VIEW_REASON}"
    assert VIEW_REASON in (verdict.reason or "")


def test_card_validation_knows_the_signal(demo_model_dir: Path) -> None:
    raw = json.loads((demo_model_dir / "model.json").read_text())
    signals = raw["thresholds"]["ood"]["combined_with"]
    assert [s["method"] for s in signals] == ["mahalanobis", "view_scope"]
    broken = json.loads(json.dumps(raw))
    del broken["thresholds"]["ood"]["combined_with"][1]["parameters"]
    with pytest.raises(ModelCardError, match=r"combined_with\[1\].parameters"):
        validate_card(broken)
    twice = json.loads(json.dumps(raw))
    twice["thresholds"]["ood"]["combined_with"].append(signals[1])
    with pytest.raises(ModelCardError, match="view_scope"):
        validate_card(twice)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vs-calib") / "data"
    assert (
        main(["synth", "--out", str(out), "--patients", "10", "--seed", "5", "--images-per-patient", "2-2"])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vs-other") / "data"
    args = ["synth", "--out", str(out), "--patients", "4", "--seed", "8", "--other-views-only"]
    assert main([*args, "--other-views-per-patient", "4-4"]) == 0
    return out


def test_other_views_are_found_with_their_plane(other_dir: Path) -> None:
    found = discover_other_views(other_dir)
    assert len(found) == 16 and {p for _, p, _ in found} == {
        "abdomen",
        "femur",
        "four_chamber",
        "face_profile",
    }
    assert discover_other_views(other_dir / "other_views") == found  # the folder itself: manifest above
    assert all(patient.startswith("SYN8-") for _, _, patient in found)


def test_other_views_of_a_mixed_folder_skip_cns_images_and_masks(tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    args = ["synth", "--out", str(out), "--patients", "2", "--seed", "8", "--include-other-views"]
    assert main([*args, "--images-per-patient", "2-2"]) == 0
    found = discover_other_views(out)
    assert found and all(path.parent.parent.name == "other_views" for path, _, _ in found)


def test_calibration_with_other_views_writes_the_third_signal(
    tiny_model_dir: Path, calib_dir: Path, other_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    argv = ["calibrate-ood", "--model", str(model), "--data", str(calib_dir), "--folds", "3"]
    assert main([*argv, "--other-views", str(other_dir)]) == 0
    card = load_model_card(model)  # both parameters files match their sha256
    assert card.ood_rule.methods == ("energy", "mahalanobis", "view_scope")
    ood = card.raw["thresholds"]["ood"]
    signal = ood["combined_with"][1]
    assert signal["parameters"] == {"file": "ood_views.npz", "sha256": sha256_of(model / "ood_views.npz")}
    assert signal["fitted_on"]["generator"]["seed"] == 8 and signal["fitted_on"]["images"] == 16
    assert signal["percentile"] == ood["percentile"] and ood["expected_false_flag_rate"] <= 0.03
    assert signal["radius"] > 0 and 0.0 <= signal["other_views_flagged"] <= 1.0
    views = load_view_scope(model / "ood_views.npz")
    assert views.radius == pytest.approx(signal["radius"])
    np.testing.assert_array_equal(views.means, load_class_gaussians(model / "ood.npz").means)
    # The engine computes the score the card defines.
    engine = InferenceEngine(model, device="cpu")
    images = [
        IngestedImage(source=p.name, frame=None, pixels=read_rgb(p), scan_box=None, sha256="")
        for p, _, _ in discover_other_views(other_dir)[:4]
    ]
    predictions = engine.predict(images)
    batch = np.stack([engine.preprocess(image)[0] for image in images])
    expected = view_scope_score(views, engine.run_outputs(batch, ["features"])["features"])
    for prediction, value in zip(predictions, expected, strict=True):
        assert prediction.ood_scores["view_scope"] == pytest.approx(value, rel=1e-6, abs=1e-9)


def test_other_views_from_the_calibration_seed_are_refused(
    tiny_model_dir: Path, calib_dir: Path, tmp_path: Path
) -> None:
    seed5 = tmp_path / "o5"
    assert main(["synth", "--out", str(seed5), "--patients", "1", "--seed", "5", "--other-views-only"]) == 0
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    with pytest.raises(CalibrationError, match="seed of the in-distribution calibration data"):
        calibrate_ood(tmp_path / "m", calib_dir, folds=3, other_views=seed5)
    assert not (tmp_path / "m" / "ood_views.npz").exists()


def test_demo_model_excludes_a_generated_femur_view_as_another_view(
    demo_model_dir: Path, tmp_path: Path
) -> None:
    # Seed 9: used by no calibration or measurement of the demo model.
    out = tmp_path / "femur"
    args = ["synth", "--out", str(out), "--patients", "6", "--seed", "9", "--other-views-only"]
    assert main([*args, "--other-views-per-patient", "4-4"]) == 0
    femurs = [path for path, plane, _ in discover_other_views(out) if plane == "femur"][:2]
    assert len(femurs) == 2
    images = [
        IngestedImage(source=p.name, frame=None, pixels=read_rgb(p), scan_box=None, sha256="") for p in femurs
    ]
    engine = InferenceEngine(demo_model_dir, device="cpu")
    for prediction in engine.predict(images):
        assert "view_scope" in prediction.ood_signals
        assert prediction.exclusion_reason == "an ultrasound view this model was not trained on"
    analysis = analyse_study(engine, images)
    assert analysis.verdict.indeterminate and analysis.verdict.excluded_by_reason == {VIEW: 2}
