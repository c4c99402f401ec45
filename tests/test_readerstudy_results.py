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


def test_unaided_first_answers_of_second_reads_are_an_arm_compared_with_the_final_answers() -> None:
    from app.readerstudy.results import UNAIDED_ARM

    reference = {1: "normal", 2: "Anencephaly", 3: "normal", 4: "Anencephaly"}
    reads: list[ReadFact] = []
    for reader in ("a", "b"):
        for case, ref in reference.items():
            first = "normal" if case == 2 else ref  # both miss case 2 before the reveal
            reads.append(ReadFact(reader, case, UNAIDED_ARM, ref, first, 3, 10.0 + case))
            reads.append(ReadFact(reader, case, "second-read", ref, ref, 4, 14.0 + case))
    ai = [AiFact(c, ref, ref, 0.9 if ref != "normal" else 0.1) for c, ref in reference.items()]
    out = study_results(reads, ai, ["second-read"], CLASSES, "normal")
    assert list(out["modes"]) == ["second-read"]
    assert out["second_read_unaided"]["accuracy"] == pytest.approx(6 / 8)
    assert out["modes"]["second-read"]["accuracy"] == 1.0
    pairs = [c for c in out["comparisons"] if c["a"] == UNAIDED_ARM and c["b"] == "second-read"]
    by_metric = {c["metric"]: c for c in pairs}
    assert by_metric["accuracy"]["estimate"] == pytest.approx(2 / 8)
    assert by_metric["read_time_s"]["estimate"] == pytest.approx(4.0)  # every final answer 4 s later
    versus_ai = {(c["b"], c["metric"]): c for c in out["comparisons"] if c["a"] == "ai-alone"}
    assert versus_ai[(UNAIDED_ARM, "accuracy")]["estimate"] == pytest.approx(-2 / 8)
    assert versus_ai[("second-read", "accuracy")]["estimate"] == 0.0
    assert set(out["roc"]) == {UNAIDED_ARM, "second-read", "ai-alone"}
    assert out["roc"]["ai-alone"] == [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
