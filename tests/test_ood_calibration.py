"""`fetalcns calibrate-ood` and the engine's two OOD signals, on a tiny exported model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_support import strip_features

from app.cli import main
from app.inference.engine import InferenceEngine
from app.inference.mahalanobis import load_class_gaussians, mahalanobis_score
from app.inference.ood_calibration import (
    CalibrationError,
    calibrate_ood,
    choose_thresholds,
    patient_folds,
)
from app.inference.scores import energy_score
from app.ingest.types import IngestedImage
from app.modelcard import load_model_card, sha256_of, write_model_card
from app.training.data import discover_samples, read_rgb


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calib") / "data"
    args = ["synth", "--out", str(out), "--patients", "15", "--seed", "5", "--images-per-patient", "3-3"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def calibrated(tiny_model_dir: Path, calib_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    assert main(["calibrate-ood", "--model", str(model_dir), "--data", str(calib_dir), "--folds", "3"]) == 0
    return model_dir


def images_of(data_dir: Path) -> list[IngestedImage]:
    return [
        IngestedImage(source=s.path.name, frame=None, pixels=read_rgb(s.path), scan_box=None, sha256="")
        for s in discover_samples(data_dir)
    ]


def test_calibration_writes_both_signals_and_what_they_were_calibrated_on(calibrated: Path) -> None:
    card = load_model_card(calibrated)  # the parameters file matches its sha256
    ood = card.raw["thresholds"]["ood"]
    assert card.ood_rule.methods == ("energy", "mahalanobis") and ood["rule"] == "any"
    assert ood["calibration"]["generator"]["seed"] == 5
    assert ood["calibration"]["patients"] == 15 and ood["calibration"]["images"] == 45
    assert ood["expected_false_flag_rate"] <= 0.03
    assert ood["percentile"] >= 99.0 and ood["combined_with"][0]["percentile"] == ood["percentile"]
    mahalanobis = ood["combined_with"][0]
    assert mahalanobis["parameters"]["sha256"] == sha256_of(calibrated / "ood.npz")
    params = load_class_gaussians(calibrated / "ood.npz")
    assert params.width == 64 and mahalanobis["shrinkage"] == pytest.approx(params.shrinkage)


def test_engine_computes_both_signals_as_the_card_defines_them(calibrated: Path, calib_dir: Path) -> None:
    engine = InferenceEngine(calibrated, device="cpu")
    images = images_of(calib_dir)[:6]
    predictions = engine.predict(images)
    batch = np.stack([engine.preprocess(image)[0] for image in images])
    outputs = engine.run_outputs(batch, ["logits", "features"])
    params = load_class_gaussians(calibrated / "ood.npz")
    expected_m = mahalanobis_score(params, outputs["features"])
    expected_e = energy_score(outputs["logits"])
    for i, prediction in enumerate(predictions):
        assert set(prediction.ood_scores) == {"energy", "mahalanobis"}
        assert prediction.ood_scores["mahalanobis"] == pytest.approx(expected_m[i], rel=1e-6)
        assert (
            prediction.ood_score == prediction.ood_scores["energy"] == pytest.approx(expected_e[i], abs=1e-5)
        )
        assert prediction.ood == bool(prediction.ood_signals)


def test_either_signal_flags_and_the_reason_names_it(
    calibrated: Path, calib_dir: Path, tmp_path: Path
) -> None:
    card = json.loads((calibrated / "model.json").read_text())
    card["thresholds"]["ood"]["threshold"] = 1e6  # energy never flags
    card["thresholds"]["ood"]["combined_with"][0]["threshold"] = 0.0  # every distance is above 0
    shutil.copytree(calibrated, tmp_path / "m")
    write_model_card(tmp_path / "m", card)
    prediction = InferenceEngine(tmp_path / "m", device="cpu").predict(images_of(calib_dir)[:1])[0]
    assert prediction.ood and prediction.ood_signals == ("mahalanobis",) and prediction.excluded
    assert "out of distribution: feature distance" in (prediction.exclusion_reason or "")
    card["thresholds"]["ood"]["combined_with"][0]["threshold"] = 1e6
    write_model_card(tmp_path / "m", card)
    assert not InferenceEngine(tmp_path / "m", device="cpu").predict(images_of(calib_dir)[:1])[0].ood


def test_calibration_refuses_data_from_the_training_seed(
    tiny_model_dir: Path, calib_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    card["provenance"] = {"synthetic": True, "generator": {"tool": "fetalcns synth", "seed": 5}}
    write_model_card(tmp_path / "m", card)
    with pytest.raises(CalibrationError, match="seed of the training data"):
        calibrate_ood(tmp_path / "m", calib_dir, folds=3)
    assert not (tmp_path / "m" / "ood.npz").exists()


def test_a_model_without_features_needs_the_surgery_first(
    tiny_model_dir: Path, calib_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    strip_features(tmp_path / "m" / "model.onnx")
    write_model_card(tmp_path / "m", json.loads((tmp_path / "m" / "model.json").read_text()))
    assert main(["calibrate-ood", "--model", str(tmp_path / "m"), "--data", str(calib_dir)]) == 2
    assert "--add-features-output" in capsys.readouterr().err


def test_a_card_asking_for_mahalanobis_needs_the_features_output(calibrated: Path, tmp_path: Path) -> None:
    shutil.copytree(calibrated, tmp_path / "m")
    strip_features(tmp_path / "m" / "model.onnx")
    write_model_card(tmp_path / "m", json.loads((tmp_path / "m" / "model.json").read_text()))
    with pytest.raises(Exception, match="lacks the output"):
        InferenceEngine(tmp_path / "m", device="cpu")


def test_thresholds_rise_together_until_the_combined_rate_is_met() -> None:
    rng = np.random.default_rng(0)
    scores = {"energy": rng.normal(size=1000), "mahalanobis": rng.normal(size=1000)}
    p, thresholds, rates, combined = choose_thresholds(scores, 99.0, 0.03)
    assert p == 99.0 and combined <= 0.03
    assert thresholds["energy"] == pytest.approx(np.percentile(scores["energy"], 99.0))
    assert rates["energy"] == pytest.approx(0.01, abs=1e-3)
    p, thresholds, rates, combined = choose_thresholds(scores, 97.0, 0.03)
    assert p > 97.0 and combined <= 0.03
    # One step lower would have flagged too many.
    lower = {m: np.percentile(s, p - 0.1) for m, s in scores.items()}
    assert (
        np.mean((scores["energy"] > lower["energy"]) | (scores["mahalanobis"] > lower["mahalanobis"])) > 0.03
    )


def test_patient_folds_keep_a_patients_images_together() -> None:
    patients = ["a", "a", "b", "c", "c", "d", "e", "f"]
    labels = [0, 0, 0, 1, 1, 1, 0, 1]
    fold = patient_folds(patients, labels, 2)
    assert fold[0] == fold[1] and fold[3] == fold[4]
    assert set(fold) == {0, 1}


def test_parameters_of_another_feature_width_are_refused(calibrated: Path, tmp_path: Path) -> None:
    from app.inference.runtime import EngineError
    from tests.conftest import DEMO_MODEL_DIR

    shutil.copytree(calibrated, tmp_path / "m")
    shutil.copyfile(DEMO_MODEL_DIR / "ood.npz", tmp_path / "m" / "ood.npz")  # 128 features, not 64
    write_model_card(tmp_path / "m", json.loads((tmp_path / "m" / "model.json").read_text()))
    with pytest.raises(EngineError, match="OOD parameters are for 128 features, the model has 64"):
        InferenceEngine(tmp_path / "m", device="cpu")
