"""A tiny end-to-end run: train (final fit and k-fold) → export → ONNX Runtime, on synthetic data."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from training_support import tiny_synth_dir

from app.cli import main
from app.modelcard import load_model_card
from app.preprocess import to_model_input
from app.provenance import absolute_paths_in, data_hash
from app.training.data import discover_samples, read_rgb, verify_dataset
from app.training.experiment import choose_ood_calibration_images, cross_validate, final_fit
from app.training.trainer import TrainConfig, load_checkpoint

__all__ = ["tiny_synth_dir"]

PROJECT = Path(__file__).resolve().parents[1]
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
    assert main([*command, "--aggregation", "geomean"]) == 0
    card = load_model_card(out)
    assert card.name == "tiny-demo"
    assert card.aggregation == "geomean"
    assert card.banner == "demo model — synthetic training data — not for clinical use"
    assert card.raw["provenance"]["generator"]["seed"] == 7
    assert card.raw["thresholds"]["ood"]["calibrated_on"].endswith("training images")
    assert_portable_provenance(card.raw, tiny_synth_dir)

    sample = discover_samples(tiny_synth_dir)[0]
    batch = to_model_input(read_rgb(sample.path), card.preprocess)[None]
    session = ort.InferenceSession(str(card.onnx_path), providers=["CPUExecutionProvider"])
    logits, cam = session.run(["logits", "cam"], {"image": batch})
    model, _ = load_checkpoint(final_checkpoint)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    assert np.abs(logits - expected).max() <= 1e-4
    assert cam.shape == (1, 5, 7, 7) and (cam >= 0).all()


def assert_portable_provenance(card: dict[str, Any], data_dir: Path) -> None:
    """The card names code and data without one absolute path, and pins both."""
    assert absolute_paths_in(card) == [], "the card holds an absolute path"
    provenance = card["provenance"]
    assert provenance["data"] == data_dir.name  # the test data lies outside the project
    head = subprocess.run(
        ["git", "-C", str(PROJECT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert provenance["code"]["commit"] == head and isinstance(provenance["code"]["dirty"], bool)
    assert provenance["data_hash"]["sha256"] == data_hash(data_dir)["sha256"]
    assert verify_dataset(data_dir, provenance)
    assert (
        provenance["dataset_record"]["seed"] == 7 and provenance["dataset_record"]["tool"] == "fetalcns synth"
    )


def with_sites(source: Path, target: Path) -> Path:
    """A copy of a data set whose manifest gains a site column (patients alternate between 2 sites)."""
    shutil.copytree(source, target)
    manifest = target / "manifest.csv"
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    order = sorted({r["patient_id"] for r in rows})
    for row in rows:
        row["site"] = f"site-{'ab'[order.index(row['patient_id']) % 2]}"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0]], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_train_group_by_site_holds_each_site_out_once(
    tiny_synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = with_sites(tiny_synth_dir, tmp_path / "sites")
    run = tmp_path / "run"
    train = ["train", "--data", str(data), "--out", str(run), "--group-by", "site", "--width", "0.125"]
    assert main([*train, "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    summary = json.loads((run / "cv.json").read_text())
    assert summary["protocol"] == "leave-one-site-out" and summary["group_by"] == "site"
    site_of = {s.patient: s.column("site") for s in discover_samples(data)}
    assert [f["group"] for f in summary["folds"]] == ["site-a", "site-b"]
    for fold in summary["folds"]:
        assert {site_of[p] for p in fold["held_out_patients"]} == {fold["group"]}
        assert fold["train_patients"] + fold["val_patients"] == 10
    per_group = summary["per_group"]
    assert set(per_group) == {"site-a", "site-b"}
    assert sum(g["patients"] for g in per_group.values()) == 10
    assert sum(g["images"] for g in per_group.values()) == 20
    for name, group in per_group.items():
        held = [p for p, site in site_of.items() if site == name]
        probabilities = summary["out_of_fold_patient_probabilities"]
        right = [int(np.argmax(probabilities[p])) == summary["patient_labels"][p] for p in held]
        assert group["patient_accuracy"] == pytest.approx(np.mean(right))
        assert 0.0 <= group["image_accuracy"] <= 1.0
    printed = capsys.readouterr().out
    assert "site site-a: 5 patients" in printed and "site site-b: 5 patients" in printed


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
    # then an export with the normal-contrast CAM target (the default is the logit); the region
    # cache goes to a scratch folder.
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
                "normal-contrast",
            ]
        )
        == 0
    )
    card = load_model_card(out).raw
    assert card["architecture_details"]["pooling"] == "lse"
    assert card["architecture_details"]["output_stride"] == 16
    assert card["outputs"]["cam"]["target"] == "normal-contrast"
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
