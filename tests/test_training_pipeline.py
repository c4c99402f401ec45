"""A tiny end-to-end run: train (final fit and k-fold) → export → ONNX Runtime, on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from training_support import tiny_synth_dir

from app.cli import main
from app.modelcard import load_model_card
from app.preprocess import to_model_input
from app.training.data import discover_samples, read_rgb
from app.training.experiment import choose_ood_calibration_images, cross_validate, final_fit
from app.training.trainer import TrainConfig, load_checkpoint

__all__ = ["tiny_synth_dir"]

TINY = TrainConfig(width=0.125, epochs=1, batch_size=8, progress=False)


@pytest.fixture(scope="module")
def final_checkpoint(tiny_synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return final_fit(tiny_synth_dir, tmp_path_factory.mktemp("run"), TINY, val_fraction=0.3, disk_cache=False)


def test_final_fit_writes_a_checkpoint_with_calibration_and_provenance(final_checkpoint: Path) -> None:
    model, payload = load_checkpoint(final_checkpoint)
    assert payload["model"] == {
        "arch": "resnet34",
        "width": 0.125,
        "num_classes": 5,
        "centered_grid": True,
        "output_stride": 32,
        "pooling": "avg",
        "lse_sharpness": 4.0,
    }
    assert not set(payload["train_patients"]) & set(payload["val_patients"])
    assert len(payload["train_patients"]) + len(payload["val_patients"]) == 10
    assert payload["ood"]["method"] == "energy" and np.isfinite(payload["ood"]["threshold"])
    assert payload["provenance"]["synthetic"] is True
    assert payload["selection"]["epoch"] == 1
    assert not model.training


def test_export_cli_then_onnx_runtime_reproduces_torch(
    final_checkpoint: Path, tiny_synth_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models" / "tiny-demo"
    command = ["export", "--checkpoint", str(final_checkpoint), "--out", str(out), "--version", "0.0.1"]
    assert main(command) == 0
    card = load_model_card(out)
    assert card.name == "tiny-demo"
    assert card.banner == "demo model — synthetic training data — not for clinical use"
    assert card.raw["provenance"]["generator"]["seed"] == 7
    assert card.raw["thresholds"]["ood"]["calibrated_on"].endswith("training images")

    sample = discover_samples(tiny_synth_dir)[0]
    batch = to_model_input(read_rgb(sample.path), card.preprocess)[None]
    session = ort.InferenceSession(str(card.onnx_path), providers=["CPUExecutionProvider"])
    logits, cam = session.run(["logits", "cam"], {"image": batch})
    model, _ = load_checkpoint(final_checkpoint)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    assert np.abs(logits - expected).max() <= 1e-4
    assert cam.shape == (1, 5, 7, 7) and (cam >= 0).all()


def test_kfold_cross_validation_validates_each_patient_once(tiny_synth_dir: Path, tmp_path: Path) -> None:
    summary = cross_validate(tiny_synth_dir, tmp_path, TINY, folds=2, disk_cache=False)
    assert [f["fold"] for f in summary["folds"]] == [1, 2]
    assert sorted(summary["out_of_fold_patient_probabilities"]) == sorted(
        {s.patient for s in discover_samples(tiny_synth_dir)}
    )
    for fold in summary["folds"]:
        assert Path(fold["checkpoint"]).is_file()
    saved = json.loads((tmp_path / "cv.json").read_text())
    assert saved["protocol"] == "2-fold patient-grouped"
    assert 0.0 <= saved["out_of_fold_patient_accuracy"] <= 1.0


def test_train_cli_explains_a_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--epochs", "1"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_export_cli_explains_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_trains_and_exports_the_demo_recipe(
    tiny_synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo model's options (dilated layer4, log-sum-exp pooling) through the real commands,
    # then an export with the textbook CAM target; the region cache goes to a scratch folder.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = tmp_path / "run"
    train = ["train", "--data", str(tiny_synth_dir), "--out", str(run), "--final", "--width", "0.125"]
    train += ["--epochs", "1", "--batch-size", "8", "--val-fraction", "0.3", "--no-progress"]
    train += ["--output-stride", "16", "--pooling", "lse", "--lse-sharpness", "4"]
    assert main(train) == 0
    assert list((tmp_path / "cache" / "fetalcns" / "regions").glob("*.npy"))
    out = tmp_path / "model"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(run / "final" / "best.pt"),
                "--out",
                str(out),
                "--cam-target",
                "logit",
            ]
        )
        == 0
    )
    card = load_model_card(out).raw
    assert card["architecture_details"]["pooling"] == "lse"
    assert card["architecture_details"]["output_stride"] == 16
    assert card["outputs"]["cam"]["target"] == "logit"
    sample = discover_samples(tiny_synth_dir)[0]
    batch = to_model_input(read_rgb(sample.path), load_model_card(out).preprocess)[None]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, cam = session.run(["logits", "cam"], {"image": batch})
    assert logits.shape == (1, 5) and cam.shape == (1, 5, 14, 14)


def test_train_cli_refuses_a_non_positive_sharpness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--lse-sharpness", "0"])
    assert code == 2
    assert "--lse-sharpness > 0" in capsys.readouterr().err


def test_ood_rule_is_calibrated_on_unfitted_selection_images_when_there_are_enough() -> None:
    train, selection = list(range(500)), list(range(500, 620))
    chosen, described = choose_ood_calibration_images(train, selection)
    assert chosen == selection and described == "120 images of the epoch-selection patients"
    # Too few selection images for a stable 99th percentile: the training images, said so.
    chosen, described = choose_ood_calibration_images(train, selection[:40])
    assert chosen == train and described == "500 training images"
