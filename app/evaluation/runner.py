"""Run an exported model over a labelled data set and compute every reported metric.

The model runs through the serving engine (app.inference.InferenceEngine), so evaluation measures
exactly what a radiologist would get: same ONNX file, same preprocessing, same CAM mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.evaluation.intervals import (
    BCA,
    CLOPPER_PEARSON,
    CLOPPER_PEARSON_FALLBACK,
    PERCENTILE_FALLBACK,
    Interval,
    bca_interval,
    clopper_pearson,
    cluster_proportion_interval,
)
from app.evaluation.localisation import cam_iou, pointing_hit
from app.evaluation.metrics import (
    GA_SUBGROUPS,
    accuracy,
    expected_calibration_error,
    gestational_age_group,
    ovr_auroc,
    per_class_metrics,
    reliability_bins,
)
from app.evaluation.ood import check_ood_dirs, evaluate_ood_dirs, ood_block
from app.evaluation.perturb import ROBUSTNESS_SET, Perturbation
from app.inference.aggregate import OOD, Verdict, aggregate
from app.inference.analysis import exclusion_key
from app.inference.engine import InferenceEngine
from app.inference.temperature import negative_log_likelihood, scaled_softmax
from app.ingest.types import IngestedImage
from app.modelcard import AGGREGATIONS
from app.provenance import portable_path

# The data-set reader is torch-free; sharing it keeps training and evaluation reading one layout.
from app.training.data import Sample, describe_dataset, discover_samples, read_rgb

log = logging.getLogger(__name__)


@dataclass
class ImageRecord:
    sample: Sample
    probabilities: np.ndarray
    ood: bool
    logits: np.ndarray | None = None  # raw, before the card's temperature: ECE before calibration
    exclusion: str | None = None  # why serving would leave the image out of the verdict
    ood_signals: tuple[str, ...] = ()
    ood_scores: dict[str, float] = field(default_factory=dict)
    pointing_true: bool | None = None
    pointing_predicted: bool | None = None
    iou_true: float | None = None
    iou_predicted: float | None = None


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    classes: tuple[str, ...]
    image_true: np.ndarray
    image_probabilities: np.ndarray
    patient_true: np.ndarray
    patient_mean_probabilities: np.ndarray
    patient_vote: np.ndarray
    examples: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None or mask.shape != shape:
        return None
    return mask > 127


def score_images(
    engine: InferenceEngine,
    samples: Sequence[Sample],
    tolerance_px: int,
    chunk: int = 32,
    n_examples: int = 1,
) -> tuple[list[ImageRecord], list[tuple[str, np.ndarray, np.ndarray]]]:
    """Predictions plus, for anomaly images with a lesion mask, pointing game and CAM IoU."""
    records: list[ImageRecord] = []
    examples: list[tuple[str, np.ndarray, np.ndarray]] = []
    shown: dict[int, int] = {}
    normal = engine.card.normal_index
    for start in range(0, len(samples), chunk):
        batch = samples[start : start + chunk]
        images = [
            IngestedImage(source=s.path.name, frame=None, pixels=read_rgb(s.path), scan_box=None, sha256="")
            for s in batch
        ]
        for sample, image, prediction in zip(batch, images, engine.predict(images), strict=True):
            record = ImageRecord(
                sample,
                prediction.probabilities,
                prediction.ood,
                prediction.logits,
                exclusion_key(prediction),
                prediction.ood_signals,
                prediction.ood_scores,
            )
            mask = read_mask(sample.mask, image.pixels.shape[:2]) if sample.mask else None
            if sample.label != normal and mask is not None and mask.any():
                true_cam = prediction.cam_for(sample.label)
                record.pointing_true = pointing_hit(true_cam, mask, tolerance_px)
                record.pointing_predicted = pointing_hit(prediction.cam, mask, tolerance_px)
                record.iou_true = cam_iou(true_cam, mask)
                record.iou_predicted = cam_iou(prediction.cam, mask)
                if shown.get(sample.label, 0) < n_examples:
                    shown[sample.label] = shown.get(sample.label, 0) + 1
                    examples.append((engine.classes[sample.label], image.pixels, true_cam))
            records.append(record)
        log.info("scored %d/%d images", min(start + chunk, len(samples)), len(samples))
    return records, examples


PLANE_COLUMN = "plane"  # the manifest column naming an image's view plane
NO_PLANE = "unknown"  # a row without a plane (or variant, or site)
VARIANT_COLUMN = "variant"  # the anomaly's form (e.g. "semilobar", "acrania"); empty for normal
SITE_COLUMN = "site"  # the scanner preset that made the image


def _localisation_rates(records: Sequence[ImageRecord]) -> dict[str, Any]:
    return {
        "images": sum(r.pointing_true is not None for r in records),
        "pointing_game_true_class": _rate([r.pointing_true for r in records]),
        "iou_true_class": _rate([r.iou_true for r in records]),
    }


def _by_column(records: Sequence[ImageRecord], column: str) -> dict[str, Any]:
    """Localisation rates per value of a manifest column, over records that have a lesion mask."""
    groups: dict[str, list[ImageRecord]] = {}
    for record in records:
        if record.pointing_true is not None:
            groups.setdefault(record.sample.column(column) or NO_PLANE, []).append(record)
    return {value: _localisation_rates(rows) for value, rows in sorted(groups.items())}


def _by_plane(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Localisation rates per manifest plane, over records that have a lesion mask."""
    return _by_column(records, PLANE_COLUMN)


def localisation_block(
    records: Sequence[ImageRecord], classes: Sequence[str], normal: int, tolerance_px: int, cam_target: str
) -> dict[str, Any]:
    """Pointing game and CAM IoU of the exported map: overall, per class, per plane, per class and
    plane, per class and anomaly variant, and per site.

    Per plane because one class's views differ in how hard they are to point at (a lesion in a
    sagittal spine view against one in an axial head), which a per-class rate averages away; per
    variant because one class's forms differ too (a flat acrania remnant against a bulging
    exencephaly); per site because a mapping error between the model input, the crop box and the
    mask would show up at the sites whose probe geometry or zoom differs.
    """
    anomalies = [c for c in range(len(classes)) if c != normal]
    return {
        "images": sum(r.pointing_true is not None for r in records),
        "tolerance_px": tolerance_px,
        "cam_target": cam_target,
        "pointing_game_true_class": _rate([r.pointing_true for r in records]),
        "pointing_game_predicted_class": _rate([r.pointing_predicted for r in records]),
        "iou_true_class": _rate([r.iou_true for r in records]),
        "iou_predicted_class": _rate([r.iou_predicted for r in records]),
        "cam_threshold": "0.5 x max",
        "per_class": {
            classes[c]: _localisation_rates([r for r in records if r.sample.label == c]) for c in anomalies
        },
        "per_plane": _by_plane(records),
        "per_class_plane": {
            classes[c]: _by_plane([r for r in records if r.sample.label == c]) for c in anomalies
        },
        "per_class_variant": {
            classes[c]: _by_column([r for r in records if r.sample.label == c], VARIANT_COLUMN)
            for c in anomalies
        },
        "per_site": _by_column(records, SITE_COLUMN),
        "note": "anomaly images with a lesion mask; CAM mapped to the original image through the scan box",
    }


# Two exports of one checkpoint give the same logits up to float noise; more means other weights.
SAME_WEIGHTS_TOLERANCE = 1e-4


def compare_cam_targets(
    engine: InferenceEngine,
    records: Sequence[ImageRecord],
    localisation: dict[str, Any],
    other_model: Path,
    tolerance_px: int,
    batch_size: int,
    threads: int | None,
) -> dict[str, Any]:
    """Localisation of a second export of the same checkpoint (the other CAM target), beside this one.

    The CAM is computed inside the ONNX graph, so each heatmap kind needs its own export; this
    scores only the images with a lesion mask through the second model and refuses a model whose
    probabilities differ (other weights would make the comparison meaningless).
    """
    other = InferenceEngine(other_model, device="auto", batch_size=batch_size, threads=threads)
    if tuple(other.classes) != tuple(engine.classes):
        raise ValueError(f"{other_model}: its classes differ from the evaluated model's")
    if other.card.cam_target == engine.card.cam_target:
        raise ValueError(
            f"{other_model} has the same CAM target ({other.card.cam_target}); export the other one"
        )
    masked = [r for r in records if r.pointing_true is not None]
    other_records, _ = score_images(other, [r.sample for r in masked], tolerance_px, n_examples=0)
    difference = max(
        (
            float(np.abs(a.probabilities - b.probabilities).max())
            for a, b in zip(masked, other_records, strict=True)
        ),
        default=0.0,
    )
    if difference > SAME_WEIGHTS_TOLERANCE:
        raise ValueError(
            f"{other_model} is not an export of the same checkpoint: probabilities differ by {difference:.2g}"
        )
    block = localisation_block(
        other_records, engine.classes, engine.card.normal_index, tolerance_px, other.card.cam_target
    )
    return {
        "targets": {
            localisation["cam_target"]: _comparison_row(localisation),
            block["cam_target"]: _comparison_row(block),
        },
        "max_probability_difference": difference,
    }


def _comparison_row(block: dict[str, Any]) -> dict[str, Any]:
    keep = ("images", "pointing_game_true_class", "pointing_game_predicted_class", "iou_true_class")
    return {k: block[k] for k in keep} | {k: block[k] for k in ("per_class", "per_plane", "per_class_plane")}


# The predicted index of a patient without a verdict: a miss for accuracy and per-class metrics.
INDETERMINATE_INDEX = -1


def patient_verdict(
    engine: InferenceEngine, records: Sequence[ImageRecord], rows: Sequence[int], method: str
) -> Verdict:
    """The verdict serving would give this patient: the card's gate and its exclusions included."""
    card = engine.card
    return aggregate(
        np.stack([records[i].probabilities for i in rows]),
        engine.classes,
        card.normal_class,
        method,
        reasons=[records[i].exclusion for i in rows],
        rule=card.verdict_rule,
    )


def verdict_index(verdict: Verdict, classes: Sequence[str]) -> int:
    return INDETERMINATE_INDEX if verdict.indeterminate else list(classes).index(verdict.label)


def verdict_probabilities(verdict: Verdict, fallback: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """The verdict's probabilities; for an indeterminate one, the mean of all the patient's images.

    AUROC and ECE need a probability for every patient; accuracy and the per-class metrics
    count an indeterminate patient as not correct whatever this says.
    """
    if verdict.indeterminate:
        return fallback
    return np.array([verdict.probabilities[c] for c in classes])


def indeterminate_block(
    verdicts: Sequence[Verdict], patient_true: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    flags = [v.indeterminate for v in verdicts]
    return {
        "patients": int(sum(flags)),
        "fraction": float(np.mean(flags)) if flags else 0.0,
        "by_true_class": {
            name: int(sum(f for f, t in zip(flags, patient_true, strict=True) if t == c))
            for c, name in enumerate(classes)
        },
        "note": "no verdict under the model card's rule; counted as not correct",
    }


def predict_perturbed(
    engine: InferenceEngine,
    samples: Sequence[Sample],
    transform: Callable[[np.ndarray], np.ndarray],
    chunk: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """(N×C probabilities, N OOD flags) with `transform` applied to each image's pixels first.

    The change happens before the serving path sees the image (no scan box is given), so the
    scan-area detection, preprocessing and model all meet the changed image, as from a scanner.
    """
    probabilities, ood = [], []
    for start in range(0, len(samples), chunk):
        batch = samples[start : start + chunk]
        images = [
            IngestedImage(
                source=s.path.name, frame=None, pixels=transform(read_rgb(s.path)), scan_box=None, sha256=""
            )
            for s in batch
        ]
        for prediction in engine.predict(images):
            probabilities.append(prediction.probabilities)
            # Left out as serving leaves it out: OOD, blank, or not an ultrasound image at all.
            ood.append(prediction.excluded)
    return np.stack(probabilities), np.asarray(ood, bool)


def patient_accuracy(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    patients: Sequence[str],
    classes: Sequence[str],
    normal_class: str,
    method: str = "mean",
) -> float:
    """Accuracy of the serving verdict (`aggregate`, every image used) over patients."""
    rows_of: dict[str, list[int]] = {}
    for row, patient in enumerate(patients):
        rows_of.setdefault(patient, []).append(row)
    right = [
        aggregate(probabilities[rows], classes, normal_class, method).label == classes[int(y_true[rows[0]])]
        for rows in rows_of.values()
    ]
    return float(np.mean(right))


def gated_patient_outcomes(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    ood: np.ndarray,
    patients: Sequence[str],
    engine: InferenceEngine,
) -> tuple[float, float]:
    """(accuracy, indeterminate fraction) of the verdict serving gives: OOD-flagged images left
    out and the card's verdict rule applied, an indeterminate patient counted as not correct."""
    classes, card = engine.classes, engine.card
    rows_of: dict[str, list[int]] = {}
    for row, patient in enumerate(patients):
        rows_of.setdefault(patient, []).append(row)
    right, indeterminate = [], []
    for rows in rows_of.values():
        verdict = aggregate(
            probabilities[rows],
            classes,
            card.normal_class,
            card.aggregation,
            reasons=[OOD if ood[i] else None for i in rows],
            rule=card.verdict_rule,
        )
        indeterminate.append(verdict.indeterminate)
        right.append(not verdict.indeterminate and verdict.label == classes[int(y_true[rows[0]])])
    return float(np.mean(right)), float(np.mean(indeterminate))


def robustness_block(
    engine: InferenceEngine,
    samples: Sequence[Sample],
    baseline: np.ndarray | None = None,
    perturbations: Sequence[Perturbation] = ROBUSTNESS_SET,
) -> dict[str, Any]:
    """Image and patient accuracy on the unchanged images and under each perturbation."""
    classes, normal_class = engine.classes, engine.card.normal_class
    y_true = np.array([s.label for s in samples])
    patients = [s.patient for s in samples]

    def row(name: str, description: str, probabilities: np.ndarray, ood: np.ndarray) -> dict[str, Any]:
        served, indeterminate = gated_patient_outcomes(y_true, probabilities, ood, patients, engine)
        return {
            "name": name,
            "description": description,
            "image_accuracy": accuracy(y_true, probabilities.argmax(axis=1)),
            "patient_accuracy_mean": patient_accuracy(y_true, probabilities, patients, classes, normal_class),
            "patient_accuracy_vote": patient_accuracy(
                y_true, probabilities, patients, classes, normal_class, "vote"
            ),
            "patient_accuracy_geomean": patient_accuracy(
                y_true, probabilities, patients, classes, normal_class, "geomean"
            ),
            "ood_flagged_fraction": float(ood.mean()),
            "patient_accuracy_served": served,
            "patient_indeterminate_fraction": indeterminate,
        }

    if baseline is None:
        baseline_probs, baseline_ood = predict_perturbed(engine, samples, lambda image: image)
    else:
        baseline_probs, baseline_ood = baseline[0], baseline[1]
    rows = [row("none", "unchanged images", baseline_probs, baseline_ood)]
    for item in perturbations:
        probabilities, ood = predict_perturbed(engine, samples, item.apply)
        rows.append(row(item.name, item.description, probabilities, ood))
        log.info("robustness: %s done", item.name)
    return {
        "images": len(samples),
        "patients": len(set(patients)),
        "applied": "to each image's display pixels before scan-area detection and preprocessing",
        "aggregation": "mean probability, majority vote and product of probabilities over every image; "
        "'served' leaves out the OOD-flagged images and applies the card's aggregation and verdict rule "
        "(an indeterminate patient is not correct)",
        "rows": rows,
    }


def _rate(values: Sequence[bool | float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _named_auroc(result: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    return {
        "macro": result["macro"],
        "micro": result["micro"],
        "per_class": {classes[c]: v for c, v in result["per_class"].items()},
    }


def _classification_block(
    y_true: np.ndarray, probabilities: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], normal: int
) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    anomaly = [i for i in range(len(classes)) if i != normal]
    return {
        "accuracy": accuracy(y_true, y_pred),
        "per_class": per_class_metrics(y_true, y_pred, classes),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(range(len(classes)))).tolist(),
        "auroc_all_classes": _named_auroc(ovr_auroc(y_true, probabilities, range(len(classes))), classes),
        "auroc_anomaly_classes": _named_auroc(ovr_auroc(y_true, probabilities, anomaly), classes),
        "ece": expected_calibration_error(y_true, probabilities),
        "reliability": reliability_bins(y_true, probabilities),
    }


def evaluate_model(
    model_dir: Path,
    data_dir: Path,
    n_bootstrap: int = 1000,
    tolerance_px: int = 5,
    batch_size: int = 16,
    threads: int | None = None,
    seed: int = 0,
    robustness: bool = False,
    ood_dirs: Sequence[Path] = (),
    compare_cam_model: Path | None = None,
) -> Evaluation:
    """Every metric of the model on ``data_dir``; with ``ood_dirs``, the OOD check too
    (``app.evaluation.ood``: each folder a group of out-of-distribution inputs); with
    ``compare_cam_model`` (the same checkpoint exported with the other CAM target), the
    localisation of both heatmap kinds side by side (``compare_cam_targets``)."""
    if ood_dirs:
        check_ood_dirs(ood_dirs)  # a missing folder fails before the long scoring run
    engine = InferenceEngine(model_dir, device="auto", batch_size=batch_size, threads=threads)
    classes = engine.classes
    normal = engine.card.normal_index
    samples = discover_samples(data_dir, classes)
    records, examples = score_images(engine, samples, tolerance_px)

    y_true = np.array([r.sample.label for r in records])
    probs = np.stack([r.probabilities for r in records])
    image_groups = [r.sample.patient for r in records]

    patients = sorted({r.sample.patient for r in records})
    rows_of = {p: [i for i, r in enumerate(records) if r.sample.patient == p] for p in patients}
    patient_true = np.array([y_true[rows_of[p][0]] for p in patients])
    # Every rule is reported; the card's rule (for "vote", the mean probabilities it ranks by)
    # gives the headline patient metrics: AUROC, ECE, subgroups, the OOD check.
    rule = engine.card.aggregation
    headline = "geomean" if rule == "geomean" else "mean"
    verdicts = {m: [patient_verdict(engine, records, rows_of[p], m) for p in patients] for m in AGGREGATIONS}
    predicted = {m: np.array([verdict_index(v, classes) for v in verdicts[m]]) for m in AGGREGATIONS}

    def verdict_matrix(method: str) -> np.ndarray:
        return np.array(
            [
                verdict_probabilities(v, probs[rows_of[p]].mean(axis=0), classes)
                for v, p in zip(verdicts[method], patients, strict=True)
            ]
        )

    def probability_block(method: str) -> dict[str, Any]:
        block = _classification_block(
            patient_true, verdict_matrix(method), predicted[method], classes, normal
        )
        block["indeterminate"] = indeterminate_block(verdicts[method], patient_true, classes)
        return block

    mean_verdicts = verdicts[headline]
    patient_probs = verdict_matrix(headline)
    patient_rule_pred = predicted[rule]
    patient_vote_pred = predicted["vote"]

    image_block = _classification_block(y_true, probs, probs.argmax(axis=1), classes, normal)
    probability_blocks = {m: probability_block(m) for m in ("mean", "geomean")}
    patient_block = probability_blocks[headline]
    vote_block = {
        "accuracy": accuracy(patient_true, patient_vote_pred),
        "per_class": per_class_metrics(patient_true, patient_vote_pred, classes),
        "confusion_matrix": _confusion(patient_true, patient_vote_pred, len(classes)),
        "indeterminate": indeterminate_block(verdicts["vote"], patient_true, classes),
    }

    localisation = localisation_block(records, classes, normal, tolerance_px, engine.card.cam_target)
    if compare_cam_model is not None:
        localisation["comparison"] = compare_cam_targets(
            engine, records, localisation, compare_cam_model, tolerance_px, batch_size, threads
        )

    def subgroup_block(group_of: dict[str, str | None], order: Sequence[str]) -> dict[str, Any]:
        """Patients, images and accuracies per subgroup; the patient accuracy with its exact
        (Clopper-Pearson) interval, as subgroups are small and often perfect."""
        block: dict[str, Any] = {}
        for group in order:
            members = [i for i, p in enumerate(patients) if group_of[p] == group]
            image_rows = [row for i in members for row in rows_of[patients[i]]]
            entry: dict[str, Any] = {"patients": len(members), "images": len(image_rows)}
            if members:
                right = int((patient_true[members] == patient_rule_pred[members]).sum())
                entry["patient_accuracy"] = right / len(members)
                interval = clopper_pearson(right, len(members))
                entry["patient_accuracy_ci"] = interval.as_json() if interval else None
                entry["image_accuracy"] = accuracy(y_true[image_rows], probs[image_rows].argmax(1))
            block[group] = entry
        return block

    patient_ga = {p: records[rows_of[p][0]].sample.gestational_age_weeks for p in patients}
    subgroups = subgroup_block({p: gestational_age_group(patient_ga[p]) for p in patients}, GA_SUBGROUPS)
    # Scanner sites (the synth manifest's `site` column, or a hospital's own): the paper's claim
    # is that the model holds across centres, so each site is reported on its own.
    patient_site = {p: records[rows_of[p][0]].sample.column("site") for p in patients}
    sites = sorted({site for site in patient_site.values() if site})
    by_site = subgroup_block(patient_site, sites) if sites else {}

    anomaly = [i for i in range(len(classes)) if i != normal]
    pointing = np.array([np.nan if r.pointing_true is None else float(r.pointing_true) for r in records])

    correct_images = probs.argmax(axis=1) == y_true
    right_by_rule = {m: int((predicted[m] == patient_true).sum()) for m in AGGREGATIONS}
    with_mask = ~np.isnan(pointing)
    intervals: dict[str, Interval | None] = {
        # Patients are independent units: an exact binomial interval on the count of right verdicts.
        "patient_accuracy": clopper_pearson(right_by_rule[rule], len(patients)),
        "patient_accuracy_mean": clopper_pearson(right_by_rule["mean"], len(patients)),
        "patient_accuracy_vote": clopper_pearson(right_by_rule["vote"], len(patients)),
        "patient_accuracy_geomean": clopper_pearson(right_by_rule["geomean"], len(patients)),
        # Images of one patient are alike: resample patients.
        "image_accuracy": cluster_proportion_interval(image_groups, correct_images, None, n_bootstrap, seed),
        "image_macro_auroc_all_classes": bca_interval(
            image_groups, lambda rows: ovr_auroc(y_true[rows], probs[rows], range(len(classes)))["macro"],
            n_bootstrap, seed,
        ),
        "image_macro_auroc_anomaly_classes": bca_interval(
            image_groups, lambda rows: ovr_auroc(y_true[rows], probs[rows], anomaly)["macro"],
            n_bootstrap, seed,
        ),
        "patient_macro_auroc_all_classes": bca_interval(
            patients,
            lambda rows: ovr_auroc(patient_true[rows], patient_probs[rows], range(len(classes)))["macro"],
            n_bootstrap, seed,
        ),
        "pointing_game_true_class": cluster_proportion_interval(
            image_groups, pointing == 1.0, with_mask, n_bootstrap, seed
        ),
        "image_ece": bca_interval(
            image_groups, lambda rows: expected_calibration_error(y_true[rows], probs[rows]),
            n_bootstrap, seed,
        ),
        "patient_ece": bca_interval(
            patients,
            lambda rows: expected_calibration_error(patient_true[rows], patient_probs[rows]),
            n_bootstrap, seed,
        ),
        "ood_flagged_fraction": cluster_proportion_interval(
            image_groups, np.array([r.ood for r in records], bool), None, n_bootstrap, seed
        ),
    }  # fmt: skip
    for method, block in (*probability_blocks.items(), ("vote", vote_block)):
        _attach_intervals(block["per_class"], per_class_intervals(patient_true, predicted[method], classes))
    _attach_intervals(
        image_block["per_class"],
        per_class_intervals(y_true, probs.argmax(axis=1), classes, image_groups, n_bootstrap, seed),
    )

    provenance = describe_dataset(data_dir, samples)
    summary = {
        "patient_accuracy": accuracy(patient_true, predicted[rule]),
        "patient_accuracy_mean": probability_blocks["mean"]["accuracy"],
        "patient_accuracy_vote": vote_block["accuracy"],
        "patient_accuracy_geomean": probability_blocks["geomean"]["accuracy"],
        "image_accuracy": image_block["accuracy"],
        "image_macro_auroc_all_classes": image_block["auroc_all_classes"]["macro"],
        "image_macro_auroc_anomaly_classes": image_block["auroc_anomaly_classes"]["macro"],
        "image_micro_auroc_all_classes": image_block["auroc_all_classes"]["micro"],
        "image_micro_auroc_anomaly_classes": image_block["auroc_anomaly_classes"]["micro"],
        "patient_macro_auroc_all_classes": patient_block["auroc_all_classes"]["macro"],
        "patient_macro_auroc_anomaly_classes": patient_block["auroc_anomaly_classes"]["macro"],
        "pointing_game_true_class": localisation["pointing_game_true_class"],
        "pointing_game_predicted_class": localisation["pointing_game_predicted_class"],
        "cam_iou_true_class": localisation["iou_true_class"],
        "image_ece": image_block["ece"],
        "patient_ece": patient_block["ece"],
        "ood_flagged_fraction": float(np.mean([r.ood for r in records])),
        "patient_indeterminate_fraction": patient_block["indeterminate"]["fraction"],
    }
    metrics = {
        "model": {"name": engine.card.name, "version": engine.card.version, "sha256": engine.card.sha256},
        # A folder name or project-relative path: metrics.json and the card travel between machines.
        "data": {k: v for k, v in provenance.items() if k != "data"} | {"dir": portable_path(data_dir)},
        "classes": list(classes),
        "summary": summary,
        "confidence_intervals": {k: v.as_json() if v else None for k, v in intervals.items()},
        "bootstrap": {"resamples": n_bootstrap, "unit": "patient", "level": 0.95, "seed": seed},
        "interval_methods": INTERVAL_METHODS,
        "image": image_block,
        "patient_rule": rule,
        "patient_mean": probability_blocks["mean"],
        "patient_vote": vote_block,
        "patient_geomean": probability_blocks["geomean"],
        "gestational_age": subgroups,
        "site": by_site,
        "localisation": localisation,
        "ood": {
            "flagged_images": int(sum(r.ood for r in records)),
            "images": len(records),
            "threshold": engine.ood_rule.threshold,
            "signals": {signal.method: signal.threshold for signal in engine.ood_rule.signals},
            "flagged_by": {
                method: int(sum(method in r.ood_signals for r in records))
                for method in engine.ood_rule.methods
            },
        },
        "verdict_rule": {
            "min_usable_images": engine.card.verdict_rule.min_usable_images,
            "max_excluded_fraction": engine.card.verdict_rule.max_excluded_fraction,
        },
    }
    calibration = calibration_report(engine, records, y_true, data_dir)
    if calibration is not None:
        metrics["calibration"] = calibration
    if ood_dirs:
        groups = evaluate_ood_dirs(engine, ood_dirs)
        rule = engine.ood_rule
        metrics["ood"]["check"] = ood_block(
            rule,
            {m: np.array([r.ood_scores.get(m, np.nan) for r in records]) for m in rule.methods},
            np.array([r.ood for r in records], bool),
            [r.ood_signals for r in records],
            [not v.indeterminate for v in mean_verdicts],
            groups,
            id_patients=image_groups,
        )
        log.info("OOD check: %d group(s) done", len(groups))
    if robustness:
        ood_flags = np.array([r.ood for r in records], bool)
        metrics["robustness"] = robustness_block(engine, [r.sample for r in records], (probs, ood_flags))
    return Evaluation(
        metrics=metrics,
        classes=classes,
        image_true=y_true,
        image_probabilities=probs,
        patient_true=patient_true,
        patient_mean_probabilities=patient_probs,
        patient_vote=patient_vote_pred,
        examples=examples,
    )


# What each interval label in metrics.json means; report.html and docs/model.md say the same.
INTERVAL_METHODS = {
    CLOPPER_PEARSON: "exact binomial (Clopper-Pearson) interval on the count; for proportions of patients",
    BCA: "bias-corrected and accelerated bootstrap (scipy.stats.bootstrap, method='BCa'), "
    "resampling patients",
    CLOPPER_PEARSON_FALLBACK: "an image proportion whose patient bootstrap degenerates (0 or all successes, "
    "or every resample equal): Clopper-Pearson on the image count, which treats images as independent",
    PERCENTILE_FALLBACK: "a statistic whose BCa interval degenerates (e.g. every resample equal): the "
    "percentile interval of the same patient resamples",
}

# One-vs-rest proportions of a class: (successes, eligible rows) from truth t and prediction p.
# An indeterminate prediction (-1) is a negative for every class, as in per_class_metrics.
_ONE_VS_REST: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "sensitivity": lambda t, p: (p, t),
    "specificity": lambda t, p: (~p, ~t),
    "ppv": lambda t, p: (t, p),
    "npv": lambda t, p: (~t, ~p),
}


def per_class_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[str],
    groups: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any] | None]]:
    """95 % intervals of each class's sensitivity, specificity, PPV and NPV.

    Without ``groups`` the rows are independent patients: Clopper-Pearson on the counts. With
    ``groups`` the rows are images clustered by patient: patient-cluster BCa (Clopper-Pearson on
    the count when it degenerates).
    """
    result: dict[str, dict[str, dict[str, Any] | None]] = {}
    for index, name in enumerate(classes):
        truth, predicted = np.asarray(y_true) == index, np.asarray(y_pred) == index
        result[name] = {}
        for key, pick in _ONE_VS_REST.items():
            hits, eligible = pick(truth, predicted)
            if groups is None:
                found = clopper_pearson(int((hits & eligible).sum()), int(eligible.sum()))
            else:
                found = cluster_proportion_interval(groups, hits, eligible, n_resamples, seed)
            result[name][key] = found.as_json() if found else None
    return result


def _attach_intervals(per_class: dict[str, dict[str, Any]], found: dict[str, dict[str, Any]]) -> None:
    for name, block in per_class.items():
        block["intervals"] = found[name]


def calibration_report(
    engine: InferenceEngine, records: Sequence[ImageRecord], y_true: np.ndarray, data_dir: Path
) -> dict[str, Any] | None:
    """ECE and NLL of the images before and after the card's temperature; None without one.

    "before" is plain softmax of the raw logits, "after" what serving gives (softmax(logits / T)).
    Measured on the same images the temperature was fitted on, "after" is optimistic: flagged.
    """
    block = engine.card.raw.get("calibration")
    if not block or any(r.logits is None for r in records):
        return None
    logits = np.stack([np.asarray(r.logits, np.float64) for r in records])
    temperature = engine.temperature
    before, after = scaled_softmax(logits, 1.0), scaled_softmax(logits, temperature)
    fitted_on = block.get("fitted_on") or {}
    return {
        "method": block.get("method", "temperature"),
        "temperature": temperature,
        "fitted_on": fitted_on,
        "same_data_as_fit": fitted_on.get("data") == Path(data_dir).resolve().name,
        "image_ece_before": expected_calibration_error(y_true, before),
        "image_ece_after": expected_calibration_error(y_true, after),
        "image_nll_before": negative_log_likelihood(logits, y_true, 1.0),
        "image_nll_after": negative_log_likelihood(logits, y_true, temperature),
        "note": "probabilities elsewhere in this report are the calibrated ones (as served)",
    }


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).tolist()


def card_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The compact part of metrics.json that the model card carries."""
    return {
        "evaluated_on": metrics["data"],
        # The aggregation the card serves: "patient_accuracy" and the patient AUROC/ECE follow it.
        "patient_rule": metrics.get("patient_rule", "mean"),
        "summary": metrics["summary"],
        "confidence_intervals": metrics["confidence_intervals"],
        "interval_methods": metrics.get("interval_methods", {}),
        "per_class_patient": metrics[f"patient_{metrics.get('patient_rule', 'mean')}"]["per_class"],
        "gestational_age": metrics["gestational_age"],
        "site": metrics.get("site", {}),
        "localisation": metrics["localisation"],
    }
