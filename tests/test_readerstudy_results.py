"""Results of a reader study from plain records: the AI alone, empty modes, one-class AUCs."""

from __future__ import annotations

import pytest

from app.readerstudy.results import AiFact, ReadFact, study_results

CLASSES = ["Anencephaly", "normal"]


def test_ai_alone_counts_indeterminate_as_wrong_and_leaves_it_out_of_the_auc() -> None:
    ai = [
        AiFact(1, "normal", "normal", 0.1),
        AiFact(2, "Anencephaly", "Anencephaly", 0.9),
        AiFact(3, "Anencephaly", "indeterminate", None),
        AiFact(4, "normal", "Anencephaly", 0.95),
    ]
    out = study_results([], ai, ["unassisted"], CLASSES, "normal")
    alone = out["ai_alone"]
    assert alone["accuracy"] == pytest.approx(2 / 4)
    # Judged cases: normal 0.1 and 0.95, anomaly 0.9 → the anomaly beats one of two normals.
    assert alone["auc"] == pytest.approx(0.5)
    assert alone["confusion_columns"] == ["Anencephaly", "normal", "indeterminate"]
    assert alone["confusion"][0] == [1, 0, 1]
    assert out["modes"] == {"unassisted": {"n_reads": 0}} and out["comparisons"] == []


def test_a_mode_with_one_reference_class_has_no_auc_and_no_or_comparison() -> None:
    reads = [
        ReadFact(reader, case, mode, "normal", "normal", 3, 2.0 + case + (mode == "concurrent"))
        for reader in ("a", "b")
        for case in (1, 2, 3)
        for mode in ("unassisted", "concurrent")
    ]
    out = study_results(reads, [], ["unassisted", "concurrent"], CLASSES, "normal")
    assert out["modes"]["unassisted"]["auc"] is None and out["modes"]["concurrent"]["accuracy"] == 1.0
    assert out["modes"]["unassisted"]["median_read_time_s"] == pytest.approx(4.0)
    metrics = [c["metric"] for c in out["comparisons"]]
    assert metrics == ["accuracy", "read_time_s"]
    assert out["comparisons"][1]["estimate"] == pytest.approx(1.0)  # concurrent 1 s slower on every pair
    assert out["ai_alone"] is None
