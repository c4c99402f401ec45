"""The bundled demo model on fresh synthetic studies: right verdict per class, CAM on the lesion.

Skips (with a message) only when models/fetal-cns-demo/model.json is absent.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.inference.engine import InferenceEngine
from app.inference.pipeline import PatientResult, analyse_paths
from app.labels import PAPER_CLASSES

# A seed the demo model's training set is unlikely to share.
UNSEEN_SEED = 9173
HOT = 0.8  # "hottest region": CAM within 80 % of its peak


@pytest.fixture(scope="module")
def synthetic_studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.synth import generate_dataset

    out = tmp_path_factory.mktemp("demo-studies")
    generate_dataset(
        out, n_patients=len(PAPER_CLASSES), seed=UNSEEN_SEED, fmt="both", images_per_patient=(3, 4)
    )
    return out


@pytest.fixture(scope="module")
def demo_engine(demo_model_dir: Path) -> InferenceEngine:
    return InferenceEngine(demo_model_dir, device="cpu")


def manifest_masks(root: Path) -> dict[str, Path]:
    with (root / "manifest.csv").open(newline="") as handle:
        return {str((root / row["image"]).resolve()): root / row["mask"] for row in csv.DictReader(handle)}


def patient_folders(root: Path, subfolder: str = "") -> dict[str, Path]:
    base = root / subfolder if subfolder else root
    return {name: next((base / name).iterdir()) for name in PAPER_CLASSES}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "dicom"])
def test_each_class_gets_the_right_verdict(
    synthetic_studies: Path, demo_engine: InferenceEngine, fmt: str
) -> None:
    folders = patient_folders(synthetic_studies, "dicom" if fmt == "dicom" else "")
    wrong = {}
    for truth, folder in folders.items():
        report = analyse_paths([folder], demo_engine)
        assert not report.rejected and len(report.patients) == 1
        verdict = report.patients[0].verdict
        if verdict.label != truth:
            wrong[truth] = (verdict.label, verdict.probabilities, verdict.n_excluded)
    assert not wrong, wrong


def hottest_overlaps_lesion(patient: PatientResult, masks: dict[str, Path], class_index: int) -> list[bool]:
    results = []
    for image, prediction in zip(patient.images, patient.predictions, strict=True):
        mask = cv2.imread(str(masks[str(Path(image.source).resolve())]), cv2.IMREAD_GRAYSCALE)
        if mask is None or not mask.any():
            continue  # this view does not show the lesion
        hot = prediction.cam_for(class_index) >= HOT
        results.append(bool(np.logical_and(hot, mask > 0).any()))
    return results


@pytest.mark.slow
def test_overlay_hottest_region_overlaps_the_lesion(
    synthetic_studies: Path, demo_engine: InferenceEngine
) -> None:
    masks = manifest_masks(synthetic_studies)
    for truth, folder in patient_folders(synthetic_studies).items():
        if truth == demo_engine.card.normal_class:
            continue
        patient = analyse_paths([folder], demo_engine).patients[0]
        overlaps = hottest_overlaps_lesion(patient, masks, demo_engine.classes.index(truth))
        assert overlaps, f"{truth}: no image shows the lesion"
        # Every view that shows the lesion should point at it; allow one miss in a larger study.
        assert sum(overlaps) >= max(1, len(overlaps) - 1), (truth, overlaps)
