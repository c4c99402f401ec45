"""Calibrate a model's OOD rule on held-out in-distribution images (`fetalcns calibrate-ood`).

Runs the exported ONNX model (no torch) over a labelled calibration set in the training layout,
DIR/<class>/<patient>/<image>, and writes into the model directory:

- ood.npz: the class means and shrunk tied covariance of the pooled features (Mahalanobis);
- model.json thresholds.ood: the energy signal (primary) and the Mahalanobis signal combined
  with rule "any", each threshold the same percentile of its calibration scores, the percentile
  raised from ``percentile`` in steps of 0.1 until the combined false-flag rate on the
  calibration images is at most ``max_false_flag_rate``; what the calibration data was.

The calibration patients must be unseen by training and epoch selection. The Mahalanobis
threshold comes from out-of-fold scores (patient-grouped folds: each image scored by Gaussians
fitted without its patient), because scores of the very images a Gaussian was fitted on are
biased low; the shipped parameters are then fitted on all calibration images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.engine import FEATURES_OUTPUT, LOGITS_OUTPUT, InferenceEngine
from app.inference.mahalanobis import (
    ClassGaussians,
    distances_to_means,
    fit_class_gaussians,
    fit_view_scope,
    mahalanobis_score,
    save_class_gaussians,
    save_view_scope,
    view_scope_score,
)
from app.inference.ood_cli import DEFAULT_FOLDS, DEFAULT_MAX_FALSE_FLAG_RATE, DEFAULT_PERCENTILE
from app.inference.runtime import EngineError
from app.inference.scores import energy_score
from app.ingest.types import IngestedImage
from app.modelcard import load_model_card, sha256_of, validate_card, write_model_card
from app.provenance import portable_path
from app.training.data import (
    IMAGE_SUFFIXES,
    OUT_OF_SCOPE,
    SYNTH_PATIENT_ID,
    Sample,
    describe_dataset,
    discover_samples,
    read_manifest,
    read_rgb,
)

log = logging.getLogger(__name__)

PARAMETERS_FILE = "ood.npz"
VIEWS_PARAMETERS_FILE = "ood_views.npz"
# The fraction of the calibration's non-CNS views (out of fold) that the view threshold keeps flagged.
VIEW_RECALL = 0.99
# The reason "another fetal view" needs the image within this quantile of the other views' own
# (out-of-fold) distances to their nearest plane mean; farther, the generic OOD reason is given.
VIEW_RADIUS_QUANTILE = 0.95
VIEW_SCOPE_MEANING = (
    "min over CNS classes of the Mahalanobis distance of the pooled features (output 'features') to the "
    "class mean, minus the min over non-CNS fetal views (one mean per plane) of the distance to the view's "
    "mean, both under the CNS tied covariance: positive when the image lies nearer a view the model was "
    "not trained on (abdomen, femur, four-chamber heart, face profile) than any CNS class"
)
PERCENTILE_STEP = 0.1
RULE_MEANING = "flag an image when any signal's score is above its threshold (or is not a number)"
MAHALANOBIS_MEANING = (
    "min over classes of the Mahalanobis distance of the pooled features (output 'features') to the "
    "class mean, under one shared covariance shrunk towards a multiple of the identity (Lee et al. 2018)"
)


class CalibrationError(ValueError):
    """The calibration cannot be done as asked; the message says why."""


def sample_outputs(
    engine: InferenceEngine, samples: Sequence[Sample], names: Sequence[str], batch_size: int = 32
) -> dict[str, np.ndarray]:
    """The named raw outputs (float64, stacked over images) of labelled image files, preprocessed
    as serving does; calibration needs the raw logits whatever temperature the card has now."""
    collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(samples), batch_size):
        batch = []
        for sample in samples[start : start + batch_size]:
            image = IngestedImage(
                source=sample.path.name, frame=None, pixels=read_rgb(sample.path), scan_box=None, sha256=""
            )
            batch.append(engine.preprocess(image)[0])
        for name, value in engine.run_outputs(np.stack(batch), names).items():
            collected[name].append(value)
        log.info("ran %d/%d calibration images", min(start + batch_size, len(samples)), len(samples))
    return {name: np.concatenate(values).astype(np.float64) for name, values in collected.items()}


def model_outputs(
    engine: InferenceEngine, samples: Sequence[Sample], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, C] and features [N, K] of labelled image files, preprocessed as serving does."""
    outputs = sample_outputs(engine, samples, [LOGITS_OUTPUT, FEATURES_OUTPUT], batch_size)
    return outputs[LOGITS_OUTPUT], outputs[FEATURES_OUTPUT]


def patient_folds(patients: Sequence[str], labels: Sequence[int], folds: int, seed: int = 0) -> np.ndarray:
    """A fold index per image; all images of a patient share one, classes spread over folds."""
    rng = np.random.default_rng(seed)
    first_label: dict[str, int] = {}
    for patient, label in zip(patients, labels, strict=True):
        first_label.setdefault(patient, int(label))
    fold_of: dict[str, int] = {}
    for label in sorted(set(first_label.values())):
        members = sorted(p for p, c in first_label.items() if c == label)
        rng.shuffle(members)
        for i, patient in enumerate(members):
            fold_of[patient] = i % folds
    return np.array([fold_of[p] for p in patients], dtype=np.int64)


def out_of_fold_mahalanobis(
    features: np.ndarray,
    labels: np.ndarray,
    fold: np.ndarray,
    n_classes: int,
    shrinkage: float | None = None,
) -> np.ndarray:
    """Each image's Mahalanobis score under Gaussians fitted on the other folds' patients."""
    scores = np.full(len(features), np.nan)
    for k in np.unique(fold):
        held = fold == k
        params = fit_class_gaussians(features[~held], labels[~held], n_classes, shrinkage)
        scores[held] = mahalanobis_score(params, features[held])
    return scores


def discover_other_views(directory: Path | str) -> list[tuple[Path, str, str]]:
    """(image, plane, patient) of the non-CNS views under ``directory``: a `fetalcns synth` folder
    (its manifest rows with view_scope "other") or its other_views/ folder. Without a manifest the
    plane is the file name after the first "_" (01_four_chamber.png: four_chamber), the patient the
    image's folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CalibrationError(f"other-views directory {directory} does not exist")
    root = directory if (directory / "manifest.csv").is_file() else directory.parent
    manifest = read_manifest(root)
    found: list[tuple[Path, str, str]] = []
    for image in sorted(directory.rglob("*")):
        parts = set(image.relative_to(directory).parts)
        if image.suffix.lower() not in IMAGE_SUFFIXES or parts & {"dicom", "masks"}:
            continue
        row = manifest.get(image.resolve())
        if manifest and row is not None and row.get("view_scope") != OUT_OF_SCOPE:
            continue
        plane = (row or {}).get("plane") or (image.stem.split("_", 1)[1] if "_" in image.stem else "other")
        patient = (row or {}).get("patient_id") or image.parent.name
        found.append((image, plane, patient))
    if not found:
        raise CalibrationError(f"no non-CNS view images found in {directory}")
    return found


def _check_other_views_seed(
    card_raw: dict[str, Any], calibration: dict[str, Any], patients: Sequence[str]
) -> int | None:
    """The other views' generator seed; refuse the training seed and the calibration data's seed."""
    seeds = {int(m.group(1)) for p in patients if (m := SYNTH_PATIENT_ID.fullmatch(p))}
    seed = seeds.pop() if len(seeds) == 1 else None
    trained = ((card_raw.get("provenance") or {}).get("generator") or {}).get("seed")
    calibrated = (calibration.get("generator") or {}).get("seed")
    for other, what in ((trained, "training data"), (calibrated, "in-distribution calibration data")):
        if seed is not None and other is not None and seed == other:
            raise CalibrationError(
                f"the other views come from generator seed {seed}, the seed of the {what}; "
                "generate them with a seed used nowhere else"
            )
    return seed


def out_of_fold_view_scope(
    features: np.ndarray,
    labels: np.ndarray,
    fold: np.ndarray,
    n_classes: int,
    other_features: np.ndarray,
    planes: list[str],
    shrinkage: float | None = None,
) -> np.ndarray:
    """Each calibration image's view-scope score with the CNS Gaussians fitted on the other folds."""
    scores = np.full(len(features), np.nan)
    for k in np.unique(fold):
        held = fold == k
        gaussians = fit_class_gaussians(features[~held], labels[~held], n_classes, shrinkage)
        scores[held] = view_scope_score(fit_view_scope(gaussians, other_features, planes), features[held])
    return scores


def out_of_fold_other_view_scores(
    gaussians: ClassGaussians, other_features: np.ndarray, planes: list[str], patients: list[str], folds: int
) -> np.ndarray:
    """Each other view's view-scope score, and its distance to the nearest plane mean, with the plane
    means fitted without its patient's views: [2, N]."""
    patient_list = sorted(set(patients))
    rng = np.random.default_rng(0)
    rng.shuffle(patient_list)
    fold_of = {p: i % folds for i, p in enumerate(patient_list)}
    fold = np.array([fold_of[p] for p in patients])
    scores = np.full((2, len(other_features)), np.nan)
    plane_of = np.array(planes)
    for k in np.unique(fold):
        held = fold == k
        fitted = fit_view_scope(gaussians, other_features[~held], list(plane_of[~held]))
        scores[0, held] = view_scope_score(fitted, other_features[held])
        nearest = distances_to_means(fitted.other_means, fitted.precision, other_features[held])
        scores[1, held] = nearest.min(axis=1)
    return scores


def choose_thresholds(
    scores: dict[str, np.ndarray],
    percentile: float,
    max_false_flag_rate: float,
    floors: dict[str, float] | None = None,
) -> tuple[float, dict[str, float], dict[str, float], float]:
    """The lowest percentile from ``percentile`` up (steps of 0.1) whose per-signal thresholds flag
    at most ``max_false_flag_rate`` of the calibration images with rule "any". A signal with a
    floor gets the larger of its percentile and its floor.

    Returns (percentile, threshold per signal, false-flag rate per signal, combined rate)."""
    if not 0.0 < max_false_flag_rate < 1.0:
        raise CalibrationError(f"the false-flag rate must be between 0 and 1, got {max_false_flag_rate}")
    p = float(percentile)
    while True:
        thresholds = {
            m: max(float(np.percentile(s, p)), (floors or {}).get(m, -np.inf)) for m, s in scores.items()
        }
        flagged = {m: s > thresholds[m] for m, s in scores.items()}
        combined = float(np.mean(np.any(np.stack(list(flagged.values())), axis=0)))
        if combined <= max_false_flag_rate or p >= 100.0:
            rates = {m: float(np.mean(f)) for m, f in flagged.items()}
            return p, thresholds, rates, combined
        p = min(100.0, round(p + PERCENTILE_STEP, 6))


def _check_unseen(card_raw: dict[str, Any], described: dict[str, Any]) -> None:
    """Refuse synthetic calibration data from the generator seed that made the training data."""
    seed = (described.get("generator") or {}).get("seed")
    trained = ((card_raw.get("provenance") or {}).get("generator") or {}).get("seed")
    if seed is not None and trained is not None and seed == trained:
        raise CalibrationError(
            f"the calibration images come from generator seed {seed}, the seed of the training data: "
            "their patients trained the weights or chose the epoch; generate held-out data with another seed"
        )


def calibrate_ood(
    model_dir: Path | str,
    data_dir: Path | str,
    percentile: float = DEFAULT_PERCENTILE,
    max_false_flag_rate: float = DEFAULT_MAX_FALSE_FLAG_RATE,
    folds: int = DEFAULT_FOLDS,
    shrinkage: float | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    other_views: Path | str | None = None,
) -> dict[str, Any]:
    """Fit and calibrate; write ood.npz and the card's thresholds.ood. Returns the new OOD entry.

    With ``other_views`` (non-CNS fetal views from a generator seed used nowhere else), a third
    signal, view_scope, is fitted too (ood_views.npz) and calibrated like the others."""
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    card = load_model_card(model_dir)
    engine = InferenceEngine(model_dir, device="cpu", batch_size=batch_size, threads=threads)
    if FEATURES_OUTPUT not in engine.output_names:
        raise CalibrationError(
            f"{card.onnx_path} has no 'features' output; add it first with "
            f"`fetalcns export --add-features-output {model_dir}`"
        )
    samples = discover_samples(data_dir, card.classes)
    described = describe_dataset(data_dir, samples)
    _check_unseen(card.raw, described)
    labels = np.array([s.label for s in samples], np.int64)
    patients = [s.patient for s in samples]
    if len(set(patients)) < folds:
        raise CalibrationError(f"{len(set(patients))} calibration patients are fewer than {folds} folds")
    logits, features = model_outputs(engine, samples, batch_size)
    n_classes = len(card.classes)
    fold = patient_folds(patients, labels, folds)
    scores = {
        "energy": energy_score(logits),
        "mahalanobis": out_of_fold_mahalanobis(features, labels, fold, n_classes, shrinkage),
    }
    views = None
    if other_views is not None:
        found = discover_other_views(other_views)
        view_seed = _check_other_views_seed(card.raw, described, [p for _, _, p in found])
        view_samples = [Sample(path=path, label=-1, patient=patient) for path, _, patient in found]
        view_planes = [plane for _, plane, _ in found]
        _, view_features = model_outputs(engine, view_samples, batch_size)
        scores["view_scope"] = out_of_fold_view_scope(
            features, labels, fold, n_classes, view_features, view_planes, shrinkage
        )
        views = (found, view_seed, view_planes, view_features)
        # The view threshold should keep VIEW_RECALL of the other views flagged: scored out of fold
        # (plane means without the view's patient) against the CNS Gaussians of all calibration
        # images; its floor is their (1 - VIEW_RECALL) quantile, when that is above the percentile.
        all_gaussians = fit_class_gaussians(features, labels, n_classes, shrinkage)
        other_scores, other_distances = out_of_fold_other_view_scores(
            all_gaussians, view_features, view_planes, [p for _, _, p in found], folds
        )
        radius = float(np.quantile(other_distances, VIEW_RADIUS_QUANTILE))
        floors = {"view_scope": float(np.quantile(other_scores, 1.0 - VIEW_RECALL))}
    else:
        floors = {}
    chosen, thresholds, rates, combined = choose_thresholds(scores, percentile, max_false_flag_rate, floors)
    params = fit_class_gaussians(features, labels, n_classes, shrinkage)
    # Written beside the final name first: the card and its parameters file change together.
    pending = save_class_gaussians(model_dir / (PARAMETERS_FILE + ".tmp"), params)
    pending_views = None
    if views is not None:
        view_params = replace(fit_view_scope(params, views[3], views[2]), radius=radius)
        pending_views = save_view_scope(model_dir / (VIEWS_PARAMETERS_FILE + ".tmp"), view_params)
    generator = described.get("generator") or {}
    where = f"generator seed {generator['seed']}, " if "seed" in generator else ""
    calibrated_on = (
        f"{len(samples)} images of {len(set(patients))} held-out patients ({where}{data_dir.name}), "
        "unseen by training and epoch selection"
    )
    ood = {
        "method": "energy",
        "threshold": thresholds["energy"],
        "percentile": chosen,
        "false_flag_rate": rates["energy"],
        "calibrated_on": calibrated_on,
        "combined_with": [
            {
                "method": "mahalanobis",
                "threshold": thresholds["mahalanobis"],
                "percentile": chosen,
                "false_flag_rate": rates["mahalanobis"],
                "score": MAHALANOBIS_MEANING,
                "features_output": FEATURES_OUTPUT,
                "feature_width": params.width,
                "shrinkage": params.shrinkage,
                "shrinkage_method": "Ledoit-Wolf" if shrinkage is None else "given",
                "threshold_from": (
                    f"out-of-fold scores ({folds} patient-grouped folds); the parameters file is "
                    "fitted on all calibration images"
                ),
                "parameters": {"file": PARAMETERS_FILE, "sha256": ""},  # set from the file below
            }
        ],
        "rule": "any",
        "rule_meaning": RULE_MEANING,
        "expected_false_flag_rate": combined,
        "max_false_flag_rate": float(max_false_flag_rate),
        # Portable like the training provenance: the card travels to machines without this path.
        "calibration": {**described, "data": portable_path(data_dir), "folds": int(folds)},
    }
    if views is not None:
        found, view_seed, view_planes, _ = views
        percentile_value = float(np.percentile(scores["view_scope"], chosen))
        view_patients = {p for _, _, p in found}
        ood["combined_with"].append(
            {
                "method": "view_scope",
                "threshold": thresholds["view_scope"],
                "percentile": chosen,
                "false_flag_rate": rates["view_scope"],
                "score": VIEW_SCOPE_MEANING,
                "reason": "an ultrasound view this model was not trained on",
                "features_output": FEATURES_OUTPUT,
                "feature_width": params.width,
                "planes": {name: view_planes.count(name) for name in sorted(set(view_planes))},
                "fitted_on": {
                    "data": portable_path(other_views),
                    "patients": len(view_patients),
                    "images": len(found),
                    **(
                        {"generator": {"tool": "fetalcns synth", "seed": view_seed}}
                        if view_seed is not None
                        else {}
                    ),
                },
                "threshold_from": (
                    "the larger of the percentile of the in-distribution calibration images' out-of-fold "
                    f"scores ({folds} patient-grouped folds for the CNS means; {percentile_value:.4f}) and "
                    f"the {1.0 - VIEW_RECALL:.0%} quantile of the other views' out-of-fold scores ({folds} "
                    f"patient-grouped folds for the plane means; {floors['view_scope']:.4f}), so that "
                    f"{VIEW_RECALL:.0%} of them stay flagged; the parameters file uses the CNS means and "
                    "covariance of ood.npz"
                ),
                "other_views_flagged": float(np.mean(other_scores > thresholds["view_scope"])),
                "radius": radius,
                "radius_from": (
                    f"the {VIEW_RADIUS_QUANTILE:.0%} quantile of the other views' out-of-fold distances to "
                    "their nearest plane mean: the reason 'an ultrasound view this model was not trained "
                    "on' is given only within it (and when the Mahalanobis signal does not fire)"
                ),
                "parameters": {"file": VIEWS_PARAMETERS_FILE, "sha256": ""},
            }
        )
    raw = dict(card.raw)
    raw["thresholds"] = {**raw["thresholds"], "ood": ood}
    try:
        ood["combined_with"][0]["parameters"]["sha256"] = sha256_of(pending)
        if pending_views is not None:
            ood["combined_with"][1]["parameters"]["sha256"] = sha256_of(pending_views)
        validate_card(raw)
        pending.replace(model_dir / PARAMETERS_FILE)
        if pending_views is not None:
            pending_views.replace(model_dir / VIEWS_PARAMETERS_FILE)
    finally:
        pending.unlink(missing_ok=True)
        if pending_views is not None:
            pending_views.unlink(missing_ok=True)
    write_model_card(model_dir, raw)
    try:
        load_model_card(model_dir)  # what serving will read: parameters file and digests agree
    except Exception as exc:  # pragma: no cover - write_model_card validated the card already
        raise EngineError(f"the calibrated card does not load: {exc}") from exc
    return ood
