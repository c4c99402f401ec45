"""The two training protocols: patient-grouped cross-validation (evaluates a recipe) and a final fit
(produces the model that is exported and shipped)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from app.labels import PAPER_CLASSES
from app.preprocess import PreprocessSpec
from app.training.data import describe_dataset, discover_samples
from app.training.export import ood_threshold
from app.training.splits import (
    Split,
    holdout_split,
    leave_one_patient_out,
    patient_kfold,
    patient_labels,
)
from app.training.trainer import (
    RegionCache,
    TrainConfig,
    fit,
    load_checkpoint,
    predict_probabilities,
    update_checkpoint,
)

log = logging.getLogger(__name__)

OOD_PERCENTILE = 99.0


def _indices(cache: RegionCache, patients: list[str]) -> list[int]:
    wanted = set(patients)
    return [i for i, p in enumerate(cache.patients) if p in wanted]


def _prepare(
    data_dir: Path, spec: PreprocessSpec, disk_cache: bool
) -> tuple[RegionCache, dict[str, int], dict[str, Any]]:
    samples = discover_samples(data_dir)
    provenance = describe_dataset(data_dir, samples)
    log.info("%d images of %d patients; preprocessing once", provenance["images"], provenance["patients"])
    cache = RegionCache(samples, spec, disk_cache=disk_cache)
    by_patient = patient_labels(cache.patients, cache.labels.tolist())
    return cache, by_patient, provenance


def cross_validate(
    data_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    folds: int = 5,
    lopo: bool = False,
    spec: PreprocessSpec | None = None,
    disk_cache: bool = True,
) -> dict[str, Any]:
    """Train one model per patient-grouped fold; writes OUT/fold-K/best.pt and OUT/cv.json."""
    spec = spec or PreprocessSpec()
    cache, by_patient, provenance = _prepare(data_dir, spec, disk_cache)
    splits: list[Split] = (
        leave_one_patient_out(by_patient) if lopo else patient_kfold(by_patient, folds, config.seed)
    )
    fold_reports: list[dict[str, Any]] = []
    out_of_fold: dict[str, list[float]] = {}
    for number, (train_patients, val_patients) in enumerate(splits, start=1):
        fold_config = TrainConfig(**{**asdict(config), "seed": config.seed + number})
        result = fit(
            cache,
            _indices(cache, train_patients),
            _indices(cache, val_patients),
            fold_config,
            out_dir / f"fold-{number}" / "best.pt",
            extra={"provenance": provenance, "train_patients": train_patients, "val_patients": val_patients},
            description=f"fold {number}/{len(splits)}",
        )
        out_of_fold.update(result.val_patient_probabilities)
        fold_reports.append(
            {
                "fold": number,
                "checkpoint": str(result.checkpoint),
                "train_patients": len(train_patients),
                "val_patients": len(val_patients),
                "best_epoch": result.best_epoch,
                "val_patient_loss": result.best.val_patient_loss,
                "val_patient_accuracy": result.best.val_patient_accuracy,
                "val_image_accuracy": result.best.val_image_accuracy,
            }
        )
    correct = [int(np.argmax(p)) == by_patient[k] for k, p in out_of_fold.items()]
    summary = {
        "protocol": "leave-one-patient-out" if lopo else f"{len(splits)}-fold patient-grouped",
        "classes": list(PAPER_CLASSES),
        "train_config": asdict(config),
        "provenance": provenance,
        "folds": fold_reports,
        "out_of_fold_patient_accuracy": float(np.mean(correct)),
        "out_of_fold_patient_probabilities": out_of_fold,
        "patient_labels": {k: by_patient[k] for k in out_of_fold},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cv.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


# Fewer selection images than this give too noisy a 99th percentile; then the training images
# are used instead (biased: see choose_ood_calibration_images).
MIN_OOD_CALIBRATION_IMAGES = 100


def choose_ood_calibration_images(
    train_indices: list[int], selection_indices: list[int], minimum: int = MIN_OOD_CALIBRATION_IMAGES
) -> tuple[list[int], str]:
    """The images whose energy percentile sets the OOD threshold, and how to describe them.

    The network has fitted its training images, so their energies run lower than those of any
    unseen image: the 99th percentile over them flagged 4.1 % of the demo model's held-out
    images instead of about 1 %. The epoch-selection patients were never fitted, so they are
    used whenever there are enough of them.
    """
    if len(selection_indices) >= minimum:
        return list(selection_indices), f"{len(selection_indices)} images of the epoch-selection patients"
    return list(train_indices), f"{len(train_indices)} training images"


def calibrate_ood(
    checkpoint: Path, cache: RegionCache, train_indices: list[int], selection_indices: list[int]
) -> dict[str, Any]:
    """Store the energy OOD rule (99th percentile, see choose_ood_calibration_images)."""
    model, _ = load_checkpoint(checkpoint)
    indices, described = choose_ood_calibration_images(train_indices, selection_indices)
    _, logits = predict_probabilities(model, cache, indices)
    rule = ood_threshold(logits, OOD_PERCENTILE, calibrated_on=described)
    update_checkpoint(checkpoint, ood=rule)
    return rule


def final_fit(
    data_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    val_fraction: float = 0.15,
    spec: PreprocessSpec | None = None,
    disk_cache: bool = True,
) -> Path:
    """One fit on all patients; a patient-grouped validation split serves only to pick the epoch.

    Also calibrates the out-of-distribution energy threshold (on the selection patients' images
    when there are enough, else the training images) and stores it in the checkpoint for
    `fetalcns export`. Returns OUT/final/best.pt.
    """
    spec = spec or PreprocessSpec()
    cache, by_patient, provenance = _prepare(data_dir, spec, disk_cache)
    train_patients, val_patients = holdout_split(by_patient, val_fraction, config.seed)
    train_indices = _indices(cache, train_patients)
    selection_indices = _indices(cache, val_patients)
    result = fit(
        cache,
        train_indices,
        selection_indices,
        config,
        out_dir / "final" / "best.pt",
        extra={"provenance": provenance, "train_patients": train_patients, "val_patients": val_patients},
        description="final",
    )
    rule = calibrate_ood(result.checkpoint, cache, train_indices, selection_indices)
    report = {
        "checkpoint": str(result.checkpoint),
        "best_epoch": result.best_epoch,
        "selection": asdict(result.best),
        "history": [asdict(h) for h in result.history],
        "ood": rule,
        "train_patients": len(train_patients),
        "val_patients": len(val_patients),
    }
    (out_dir / "final" / "fit.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return result.checkpoint
