"""Classification metrics: pure functions of labels and probabilities.

scikit-learn computes everything it has (confusion matrix, precision/recall/F1, AUROC); only what it
lacks is written here: specificity and NPV from the confusion matrix, and ECE. Confidence intervals
are in app/evaluation/intervals.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score
from sklearn.preprocessing import label_binarize


def _safe_ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def per_class_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """One-vs-rest sensitivity, specificity, PPV, NPV and F1 for every class.

    A ratio with an empty denominator (e.g. PPV of a class never predicted) is None, not 0.
    A prediction outside ``classes`` (-1: an indeterminate patient) is a miss for its true class
    and a negative for every other class; the confusion matrix alone would drop it.
    """
    labels = list(range(len(classes)))
    truth = np.asarray(y_true)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    _, _, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=np.nan)
    total = len(truth)
    result: dict[str, dict[str, float | int | None]] = {}
    for index, name in enumerate(classes):
        tp = matrix[index, index]
        fn = int((truth == index).sum()) - tp
        fp = matrix[:, index].sum() - tp
        tn = total - tp - fn - fp
        result[name] = {
            "support": int(support[index]),
            "sensitivity": _safe_ratio(tp, tp + fn),
            "specificity": _safe_ratio(tn, tn + fp),
            "ppv": _safe_ratio(tp, tp + fp),
            "npv": _safe_ratio(tn, tn + fn),
            "f1": None if np.isnan(f1[index]) else float(f1[index]),
        }
    return result


def ovr_auroc(
    y_true: Sequence[int], probabilities: np.ndarray, class_indices: Sequence[int]
) -> dict[str, Any]:
    """One-vs-rest AUROC of the given classes' probability columns, over all samples.

    Macro is the mean of per-class AUROCs; micro pools every (sample, class) decision. Classes
    absent from y_true (or present everywhere) have no AUROC and are left out of the macro mean.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_classes = probabilities.shape[1]
    binary = label_binarize(np.asarray(y_true), classes=list(range(n_classes)))
    if n_classes == 2:  # label_binarize returns a single column for two classes
        binary = np.column_stack([1 - binary[:, 0], binary[:, 0]])
    columns = list(class_indices)
    per_class: dict[int, float | None] = {}
    for c in columns:
        column = binary[:, c]
        defined = 0 < column.sum() < len(column)
        per_class[c] = float(roc_auc_score(column, probabilities[:, c])) if defined else None
    scored = [c for c in columns if per_class[c] is not None]
    macro = float(np.mean([per_class[c] for c in scored])) if scored else None
    pooled = binary[:, scored].ravel()
    micro = (
        float(roc_auc_score(pooled, probabilities[:, scored].ravel()))
        if scored and 0 < pooled.sum() < len(pooled)
        else None
    )
    return {"macro": macro, "micro": micro, "per_class": {int(c): per_class[c] for c in columns}}


def reliability_bins(
    y_true: Sequence[int], probabilities: np.ndarray, n_bins: int = 10
) -> list[dict[str, float | int]]:
    """Top-label confidence bins (0, 1/n], (1/n, 2/n], ...: count, mean confidence, accuracy."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins, so a confidence of exactly 1.0 lands in the last bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = which == b
        count = int(members.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "confidence": float(confidence[members].mean()) if count else 0.0,
                "accuracy": float(correct[members].mean()) if count else 0.0,
            }
        )
    return bins


def expected_calibration_error(y_true: Sequence[int], probabilities: np.ndarray, n_bins: int = 10) -> float:
    """ECE (Guo et al. 2017): sum over bins of |bin| / n × |accuracy − mean confidence|."""
    bins = reliability_bins(y_true, probabilities, n_bins)
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    return float(accuracy_score(y_true, y_pred))


GA_SUBGROUPS = ("<20 weeks", "20-28 weeks", ">28 weeks")


def gestational_age_group(weeks: float | None) -> str | None:
    """The paper's gestational-age subgroups; 20 and 28 weeks themselves fall in 20-28."""
    if weeks is None or not np.isfinite(weeks):
        return None
    if weeks < 20:
        return GA_SUBGROUPS[0]
    if weeks <= 28:
        return GA_SUBGROUPS[1]
    return GA_SUBGROUPS[2]


def binary_auroc(
    negatives: Sequence[float] | np.ndarray, positives: Sequence[float] | np.ndarray
) -> float | None:
    """AUROC of scores where higher means "positive": P(positive > negative) + ½ P(tie).

    The Mann-Whitney U statistic over mid-ranks, so ties count half, as in
    sklearn.metrics.roc_auc_score (the tests' reference). A NaN score counts as +inf (the
    OOD rule flags a NaN score too). None when either side is empty.
    """
    neg = np.nan_to_num(np.asarray(negatives, np.float64).ravel(), nan=np.inf)
    pos = np.nan_to_num(np.asarray(positives, np.float64).ravel(), nan=np.inf)
    if neg.size == 0 or pos.size == 0:
        return None
    values = np.concatenate([neg, pos])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # Mid-rank (1-based) of each distinct value: the ranks before it plus the mean of its own run.
    mid_ranks = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = mid_ranks[inverse.ravel()]
    rank_sum = ranks[neg.size :].sum()
    u = rank_sum - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))
