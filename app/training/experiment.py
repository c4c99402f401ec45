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
from app.provenance import code_commit
from app.training.data import describe_dataset, discover_samples
from app.training.export import ood_threshold
from app.training.splits import (
    Split,
    holdout_split,
    leave_one_group_out,
    leave_one_patient_out,
    patient_groups,
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
    # The code that fits the model, next to the data it fits: together they pin the run.
    provenance["code"] = code_commit()
    log.info("%d images of %d patients; preprocessing once", provenance["images"], provenance["patients"])
    cache = RegionCache(samples, spec, disk_cache=disk_cache)
    by_patient = patient_labels(cache.patients, cache.labels.tolist())
    return cache, by_patient, provenance


def _protocol_splits(
    cache: RegionCache,
    by_patient: dict[str, int],
    config: TrainConfig,
    folds: int,
    lopo: bool,
    group_by: str | None,
) -> tuple[str, list[tuple[str | None, Split]]]:
    """The protocol's name and its folds, each with the held-out group's value (or None)."""
    if group_by:
        values = [s.column(group_by) for s in cache.samples]
        group_of = patient_groups(cache.patients, values, group_by)
        return f"leave-one-{group_by}-out", list(leave_one_group_out(by_patient, group_of))
    if lopo:
        return "leave-one-patient-out", [(None, split) for split in leave_one_patient_out(by_patient)]
    splits = patient_kfold(by_patient, folds, config.seed)
    return f"{len(splits)}-fold patient-grouped", [(None, split) for split in splits]


def _group_summary(
    fold_reports: list[dict[str, Any]], out_of_fold: dict[str, list[float]], by_patient: dict[str, int]
) -> dict[str, Any]:
    """Per held-out group: patients, images, patient accuracy (mean softmax) and image accuracy."""
    summary: dict[str, Any] = {}
    for fold in fold_reports:
        held_out = fold["held_out_patients"]
        right = [int(np.argmax(out_of_fold[p])) == by_patient[p] for p in held_out]
        summary[fold["group"]] = {
            "patients": len(held_out),
            "images": fold["val_images"],
            "patient_accuracy": float(np.mean(right)),
            "image_accuracy": fold["val_image_accuracy"],
        }
    return summary


def cross_validate(
    data_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    folds: int = 5,
    lopo: bool = False,
    spec: PreprocessSpec | None = None,
    disk_cache: bool = True,
    group_by: str | None = None,
) -> dict[str, Any]:
    """Train one model per patient-grouped fold; writes OUT/fold-K/best.pt and OUT/cv.json.

    With ``group_by`` (a manifest.csv column, e.g. site): leave-one-group-out, one fold per
    distinct value, and the summary reports each held-out group's patient and image accuracy.
    """
    spec = spec or PreprocessSpec()
    cache, by_patient, provenance = _prepare(data_dir, spec, disk_cache)
    protocol, splits = _protocol_splits(cache, by_patient, config, folds, lopo, group_by)
    fold_reports: list[dict[str, Any]] = []
    out_of_fold: dict[str, list[float]] = {}
    for number, (group, (train_patients, val_patients)) in enumerate(splits, start=1):
        fold_config = TrainConfig(**{**asdict(config), "seed": config.seed + number})
        val_indices = _indices(cache, val_patients)
        result = fit(
            cache,
            _indices(cache, train_patients),
            val_indices,
            fold_config,
            out_dir / f"fold-{number}" / "best.pt",
            extra={"provenance": provenance, "train_patients": train_patients, "val_patients": val_patients},
            description=f"fold {number}/{len(splits)}" + (f" ({group_by} {group} held out)" if group else ""),
        )
        out_of_fold.update(result.val_patient_probabilities)
        report: dict[str, Any] = {
            "fold": number,
            "checkpoint": str(result.checkpoint),
            "train_patients": len(train_patients),
            "val_patients": len(val_patients),
            "val_images": len(val_indices),
            "best_epoch": result.best_epoch,
            "val_patient_loss": result.best.val_patient_loss,
            "val_patient_accuracy": result.best.val_patient_accuracy,
            "val_image_accuracy": result.best.val_image_accuracy,
        }
        if group is not None:
            report |= {"group": group, "held_out_patients": val_patients}
        fold_reports.append(report)
    correct = [int(np.argmax(p)) == by_patient[k] for k, p in out_of_fold.items()]
    summary = {
        "protocol": protocol,
        "classes": list(PAPER_CLASSES),
        "train_config": asdict(config),
        "provenance": provenance,
        "folds": fold_reports,
        "out_of_fold_patient_accuracy": float(np.mean(correct)),
        "out_of_fold_patient_probabilities": out_of_fold,
        "patient_labels": {k: by_patient[k] for k in out_of_fold},
    }
    if group_by:
        # The held-out group also picks each fold's epoch (as every protocol here does), so these
        # lean slightly optimistic; they still never saw the group's patients in training.
        summary["group_by"] = group_by
        summary["per_group"] = _group_summary(fold_reports, out_of_fold, by_patient)
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
