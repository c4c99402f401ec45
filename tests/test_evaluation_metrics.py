from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

from app.evaluation.metrics import (
    accuracy,
    expected_calibration_error,
    gestational_age_group,
    ovr_auroc,
    per_class_metrics,
    reliability_bins,
)


def test_per_class_metrics_match_a_hand_worked_confusion_matrix() -> None:
    # confusion (rows true, cols predicted): [[1,1,0],[0,2,0],[1,0,0]]
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0]
    m = per_class_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["a"] == pytest.approx(
        {"support": 2, "sensitivity": 0.5, "specificity": 2 / 3, "ppv": 0.5, "npv": 2 / 3, "f1": 0.5}
    )
    assert m["b"] == pytest.approx(
        {"support": 2, "sensitivity": 1.0, "specificity": 2 / 3, "ppv": 2 / 3, "npv": 1.0, "f1": 0.8}
    )
    # Never predicted: PPV undefined (None, not 0); F1 = 2TP/(2TP+FP+FN) = 0.
    assert m["c"]["sensitivity"] == 0.0
    assert m["c"]["specificity"] == 1.0
    assert m["c"]["ppv"] is None
    assert m["c"]["npv"] == pytest.approx(0.8)
    assert m["c"]["f1"] == 0.0


def test_auroc_hand_worked_binary_case() -> None:
    # Positive scores 0.35 and 0.8 vs negatives 0.1 and 0.4: 3 of 4 pairs ranked right.
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    result = ovr_auroc([0, 0, 1, 1], probabilities, [1])
    assert result["per_class"][1] == pytest.approx(0.75)
    assert result["macro"] == pytest.approx(0.75)


def test_auroc_macro_and_micro_match_sklearn_for_all_and_anomaly_classes() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=200)
    logits = rng.normal(size=(200, 5)) + 1.5 * np.eye(5)[y]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    everything = ovr_auroc(y, probabilities, range(5))
    assert everything["macro"] == pytest.approx(roc_auc_score(y, probabilities, multi_class="ovr"))
    binary = label_binarize(y, classes=range(5))
    assert everything["micro"] == pytest.approx(roc_auc_score(binary, probabilities, average="micro"))
    anomaly = [0, 1, 2, 4]
    subset = ovr_auroc(y, probabilities, anomaly)
    expected_macro = roc_auc_score(binary[:, anomaly], probabilities[:, anomaly], average="macro")
    expected_micro = roc_auc_score(binary[:, anomaly], probabilities[:, anomaly], average="micro")
    assert subset["macro"] == pytest.approx(expected_macro)
    assert subset["micro"] == pytest.approx(expected_micro)


def test_auroc_of_an_absent_class_is_undefined_not_zero() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1]])
    result = ovr_auroc([0, 1, 0], probabilities, [0, 1, 2])
    assert result["per_class"][2] is None
    assert result["macro"] == pytest.approx(1.0)


def test_ece_hand_worked_with_four_bins() -> None:
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    y = [0, 1, 0, 1]
    # Bin (0.75, 1]: confidences 0.9, 0.8 (mean 0.85), accuracy 1/2 → 0.35 × 2/4.
    # Bin (0.5, 0.75]: confidences 0.6, 0.7 (mean 0.65), accuracy 1 → 0.35 × 2/4.
    assert expected_calibration_error(y, probabilities, n_bins=4) == pytest.approx(0.35)
    bins = reliability_bins(y, probabilities, n_bins=4)
    assert [b["count"] for b in bins] == [0, 0, 2, 2]


def test_ece_is_zero_for_a_perfectly_calibrated_confident_model() -> None:
    probabilities = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error([0, 1], probabilities) == 0.0


def test_accuracy_matches_definition() -> None:
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75


@pytest.mark.parametrize(
    ("weeks", "group"),
    [
        (15.0, "<20 weeks"),
        (19.9, "<20 weeks"),
        (20.0, "20-28 weeks"),
        (28.0, "20-28 weeks"),
        (28.1, ">28 weeks"),
    ],
)
def test_gestational_age_groups(weeks: float, group: str) -> None:
    assert gestational_age_group(weeks) == group


def test_unknown_gestational_age_has_no_group() -> None:
    assert gestational_age_group(None) is None
    assert gestational_age_group(float("nan")) is None


def test_an_indeterminate_prediction_is_a_miss_not_dropped() -> None:
    # Patient 3 (true "b") got no verdict (-1): a false negative for "b", a true negative for "a".
    y_true = [0, 1, 1, 1]
    y_pred = [0, 1, 1, -1]
    m = per_class_metrics(y_true, y_pred, ["a", "b"])
    assert m["b"]["sensitivity"] == pytest.approx(2 / 3) and m["b"]["support"] == 3
    assert m["a"] == pytest.approx(
        {"support": 1, "sensitivity": 1.0, "specificity": 1.0, "ppv": 1.0, "npv": 1.0, "f1": 1.0}
    )
    assert accuracy(y_true, y_pred) == 0.75
