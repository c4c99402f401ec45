"""Localisation per class and plane, and both CAM targets of one set of weights side by side."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from training_support import tiny_synth_dir

from app.cli import main
from app.evaluation.runner import evaluate_model
from app.inference.engine import InferenceEngine
from app.ingest.types import IngestedImage
from app.synth import generate_dataset
from app.training.data import discover_samples, read_rgb
from app.training.export import build_untrained_model, export_onnx, export_untrained_demo

__all__ = ["tiny_synth_dir"]


@pytest.fixture(scope="module")
def two_exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One untrained model exported twice: the default (logit) and the normal-contrast CAM."""
    root = tmp_path_factory.mktemp("cam-targets")
    logit = export_untrained_demo(root / "logit", width=0.125, seed=0)
    card = {"name": "contrast", "version": "0.0.0", "provenance": {"data": None, "synthetic": False}}
    contrast = export_onnx(build_untrained_model(0.125, 0), root / "contrast", card, "normal-contrast")
    return logit, contrast


def _manifest_rows(data_dir: Path) -> dict[Path, dict[str, str]]:
    with (data_dir / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return {(data_dir / row["image"]).resolve(): row for row in csv.DictReader(handle)}


def _independent_hits(
    model_dir: Path, data_dir: Path, column: str = "plane"
) -> dict[tuple[str, str], list[bool]]:
    """Pointing-game hits (tolerance 0) per (class, manifest `column`), recounted with numpy and Pillow."""
    engine = InferenceEngine(model_dir, device="cpu")
    manifest = _manifest_rows(data_dir)
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for sample in discover_samples(data_dir, engine.classes):
        if sample.label == engine.card.normal_index or sample.mask is None:
            continue
        pixels = read_rgb(sample.path)
        mask = np.asarray(Image.open(sample.mask).convert("L")) > 127
        if not mask.any():
            continue
        image = IngestedImage(source="x", frame=None, pixels=pixels, scan_box=None, sha256="")
        cam = engine.predict([image])[0].cam_for(sample.label)
        peak = cam.max()
        if peak <= 0:
            hit = False
        else:
            rows, cols = np.nonzero(cam == peak)
            hit = bool(mask[int(np.rint(rows.mean())), int(np.rint(cols.mean()))])
        hits[(engine.classes[sample.label], manifest[sample.path.resolve()][column])].append(hit)
    return hits


def _with_half_frame_masks(source: Path, target: Path) -> Path:
    """A copy whose lesion masks cover the top half of the frame on every other anomaly image.

    An untrained network's peaks seldom land on a real lesion, so with the generator's masks every
    image would be a miss; half-frame masks make hits and misses both occur (each decided by where
    the real CAM peaks), so the per-group rates are worth comparing.
    """
    shutil.copytree(source, target)
    masks = sorted(p for p in (target / "masks").rglob("*.png") if np.asarray(Image.open(p)).any())
    for mask_path in masks[::2]:
        mask = np.zeros_like(np.asarray(Image.open(mask_path).convert("L")))
        mask[: mask.shape[0] // 2] = 255
        Image.fromarray(mask).save(mask_path)
    return target


def test_pointing_game_per_class_and_plane_equals_an_independent_recount(
    two_exports: tuple[Path, Path], tiny_synth_dir: Path, tmp_path: Path
) -> None:
    model = two_exports[0]
    data = _with_half_frame_masks(tiny_synth_dir, tmp_path / "data")
    metrics = evaluate_model(model, data, n_bootstrap=5, tolerance_px=0).metrics
    localisation = metrics["localisation"]
    hits = _independent_hits(model, data)
    assert localisation["cam_target"] == "logit"
    anomaly_masks = [
        row["mask"]
        for row in csv.DictReader((data / "manifest.csv").open(newline="", encoding="utf-8"))
        if row["class"] != "normal" and row["mask"]
    ]
    shown = sum(bool(np.asarray(Image.open(data / m)).any()) for m in anomaly_masks)
    assert sum(len(v) for v in hits.values()) == localisation["images"] == shown >= 8
    pooled_hits = [h for v in hits.values() for h in v]
    assert any(pooled_hits) and not all(pooled_hits), "only hits or only misses would prove little"

    by_class_plane = {
        (name, plane): (row["images"], row["pointing_game_true_class"])
        for name, planes in localisation["per_class_plane"].items()
        for plane, row in planes.items()
    }
    assert by_class_plane == {key: (len(v), pytest.approx(float(np.mean(v)))) for key, v in hits.items()}
    for plane in {p for _, p in hits}:
        pooled = [h for (_, p), v in hits.items() if p == plane for h in v]
        row = localisation["per_plane"][plane]
        assert row["images"] == len(pooled)
        assert row["pointing_game_true_class"] == pytest.approx(float(np.mean(pooled)))
    for name, row in localisation["per_class"].items():
        pooled = [h for (c, _), v in hits.items() if c == name for h in v]
        assert row["images"] == len(pooled)
        assert row["pointing_game_true_class"] == pytest.approx(float(np.mean(pooled)))


def test_pointing_game_per_variant_and_site_equals_an_independent_recount(
    two_exports: tuple[Path, Path], tmp_path: Path
) -> None:
    # Two sites whose probe geometry, crop box and zoom differ (phased array from the skin, a
    # narrow deep curvilinear sector): per-site rates are where a mapping error would show.
    source = tmp_path / "sites"
    generate_dataset(source, n_patients=10, seed=7, images_per_patient=(2, 2), sites=["C", "F"])
    data = _with_half_frame_masks(source, tmp_path / "data")
    localisation = evaluate_model(two_exports[0], data, n_bootstrap=5, tolerance_px=0).metrics["localisation"]
    by_variant = _independent_hits(two_exports[0], data, "variant")
    by_site = _independent_hits(two_exports[0], data, "site")
    assert {site for _, site in by_site} == {"C", "F"}
    assert len({variant for _, variant in by_variant}) >= 4
    reported = {
        (name, variant): (row["images"], row["pointing_game_true_class"])
        for name, variants in localisation["per_class_variant"].items()
        for variant, row in variants.items()
    }
    assert reported == {key: (len(v), pytest.approx(float(np.mean(v)))) for key, v in by_variant.items()}
    for site in ("C", "F"):
        pooled = [h for (_, s), v in by_site.items() if s == site for h in v]
        row = localisation["per_site"][site]
        assert row["images"] == len(pooled)
        assert row["pointing_game_true_class"] == pytest.approx(float(np.mean(pooled)))
    assert sum(row["images"] for row in localisation["per_site"].values()) == localisation["images"]


def test_compare_cam_model_reports_both_targets_of_the_same_weights(
    two_exports: tuple[Path, Path], tiny_synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logit, contrast = two_exports
    out = tmp_path / "report"
    command = ["evaluate", "--model", str(logit), "--data", str(tiny_synth_dir), "--out", str(out)]
    assert main([*command, "--bootstrap", "5", "--compare-cam-model", str(contrast)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    comparison = metrics["localisation"]["comparison"]
    assert set(comparison["targets"]) == {"logit", "normal-contrast"}
    assert comparison["max_probability_difference"] <= 1e-4
    own = comparison["targets"]["logit"]
    assert own["per_class"] == metrics["localisation"]["per_class"]
    assert own["per_class_plane"] == metrics["localisation"]["per_class_plane"]
    # The other row is what evaluating the other export on its own reports.
    alone = evaluate_model(contrast, tiny_synth_dir, n_bootstrap=5).metrics["localisation"]
    other = comparison["targets"]["normal-contrast"]
    assert other["pointing_game_true_class"] == alone["pointing_game_true_class"]
    assert other["per_class_plane"] == alone["per_class_plane"]
    assert "Pointing game by CAM target" in (out / "report.html").read_text()
    assert "pointing game by CAM target (true class):" in capsys.readouterr().out


def test_compare_cam_model_refuses_the_same_target_and_other_weights(
    two_exports: tuple[Path, Path], tiny_synth_dir: Path, tmp_path: Path
) -> None:
    logit, _ = two_exports
    with pytest.raises(ValueError, match="same CAM target"):
        evaluate_model(logit, tiny_synth_dir, n_bootstrap=5, compare_cam_model=logit)
    card = {"name": "other", "version": "0.0.0", "provenance": {"data": None, "synthetic": False}}
    other = export_onnx(build_untrained_model(0.125, 5), tmp_path / "other", card, "normal-contrast")
    with pytest.raises(ValueError, match="not an export of the same checkpoint"):
        evaluate_model(logit, tiny_synth_dir, n_bootstrap=5, compare_cam_model=other)
