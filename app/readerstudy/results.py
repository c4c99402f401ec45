"""A reader study's results from its answered reads: per mode (pooled and per reader), the AI
alone, and the paired comparisons between modes. Pure: the service hands in plain records.

Conventions:
- The final answer of a read is scored; in second-read mode that is the answer after the reveal.
  The unaided first answers of second reads form an arm of their own, "second-read-unaided",
  compared with the final answers of the same reads (the effect of the reveal).
- The readers' AUC is over the 1–10 abnormality score (stats.abnormality_score), normal vs any
  anomaly; the AI's over its P(abnormal). None where the reads hold only one of the two.
- The AI alone counts an indeterminate verdict as not correct (as ``fetalcns evaluate`` does)
  and leaves it out of its AUC.
- Comparisons pair the same reader and case in two modes: McNemar for accuracy, Wilcoxon for
  reading time, Obuchowski–Rockette (DeLong covariances) for AUC over the readers who read every
  case in both modes (at least two readers are needed, else no AUC comparison is made). The
  time difference is the Hodges–Lehmann shift with its signed-rank interval.
- Every arm is also compared with the AI alone on the same cases ("ai-alone" as a): McNemar on the
  reader×case pairs pooled over readers (this ignores the clustering of reads within readers, and
  says so in its test name), and for AUC the readers-versus-standalone Obuchowski–Rockette analysis
  (mrmc.readers_versus_standalone) over the readers who read every case the AI judged.
- ``roc`` holds the empirical ROC points of each arm, pooled over its readers, and of the AI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any

import numpy as np

from app.readerstudy import mrmc
from app.readerstudy.stats import (
    PairedTest,
    abnormality_score,
    accuracy,
    auc,
    confusion_matrix,
    hodges_lehmann,
    mcnemar,
    mean_median,
    misdiagnosis_rate,
    roc_points,
    sensitivity_specificity,
    wilcoxon_signed_rank,
)

UNAIDED_ARM = "second-read-unaided"
AI_ARM = "ai-alone"


@dataclass(frozen=True)
class ReadFact:
    reader: str
    case: int
    mode: str
    reference: str
    label: str
    confidence: int
    read_time_s: float


@dataclass(frozen=True)
class AiFact:
    case: int
    reference: str
    label: str
    p_abnormal: float | None


def _safe_auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    return auc(scores, positive) if any(positive) and not all(positive) else None


def summarise(reads: Sequence[ReadFact], classes: Sequence[str], normal: str) -> dict[str, Any]:
    """The metrics of one group of reads."""
    reference = [r.reference for r in reads]
    answers = [r.label for r in reads]
    sensitivity, specificity = sensitivity_specificity(reference, answers, classes)
    mean_t, median_t = mean_median([r.read_time_s for r in reads])
    return {
        "n_reads": len(reads),
        "accuracy": accuracy(reference, answers),
        "misdiagnosis_rate": misdiagnosis_rate(reference, answers, normal),
        "auc": _safe_auc(
            [abnormality_score(r.label, r.confidence, normal) for r in reads],
            [x != normal for x in reference],
        ),
        "mean_read_time_s": mean_t,
        "median_read_time_s": median_t,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "confusion": confusion_matrix(reference, answers, classes),
    }


def ai_alone(facts: Sequence[AiFact], classes: Sequence[str], normal: str) -> dict[str, Any]:
    reference = [f.reference for f in facts]
    answers = [f.label for f in facts]
    judged = [f for f in facts if f.p_abnormal is not None]
    sensitivity, specificity = sensitivity_specificity(reference, answers, classes)
    labels = list(classes) + sorted({a for a in answers if a not in classes})
    return {
        "n_reads": len(facts),
        "accuracy": accuracy(reference, answers),
        "misdiagnosis_rate": misdiagnosis_rate(reference, answers, normal),
        "auc": _safe_auc([f.p_abnormal or 0.0 for f in judged], [f.reference != normal for f in judged]),
        "mean_read_time_s": None,
        "median_read_time_s": None,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "confusion": confusion_matrix(reference, answers, labels),
        "confusion_columns": labels,
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _pairs(reads: Sequence[ReadFact], a: str, b: str) -> list[tuple[ReadFact, ReadFact]]:
    by_key = {(r.reader, r.case, r.mode): r for r in reads}
    return [
        (by_key[(r.reader, r.case, a)], r) for r in reads if r.mode == b and (r.reader, r.case, a) in by_key
    ]


def _auc_comparison(reads: Sequence[ReadFact], a: str, b: str, normal: str) -> dict[str, Any] | None:
    cases = sorted({r.case for r in reads})
    by_key = {(r.reader, r.case, r.mode): r for r in reads}
    readers = sorted({r.reader for r in reads})
    complete = [reader for reader in readers if all((reader, c, m) in by_key for c in cases for m in (a, b))]
    truth = np.array([by_key[(complete[0], c, a)].reference != normal for c in cases]) if complete else None
    if len(complete) < 2 or truth is None or truth.all() or not truth.any():
        return None
    scores = np.array(
        [
            [
                [
                    abnormality_score(by_key[(j, c, m)].label, by_key[(j, c, m)].confidence, normal)
                    for c in cases
                ]
                for j in complete
            ]
            for m in (a, b)
        ],
        dtype=float,
    )
    result = mrmc.obuchowski_rockette(scores, truth, covariance="delong")
    return {
        "a": a,
        "b": b,
        "metric": "auc",
        "test": "obuchowski-rockette (DeLong covariances, Hillis df)",
        "statistic": _finite(result.f_statistic),
        "p_value": result.p_value,
        "estimate": result.difference,
        "ci": list(result.difference_ci) if result.difference_ci else None,
        "ci_method": "Obuchowski–Rockette (Hillis)",
        # Infinite when the readers agree exactly across modes (no reader-by-mode variance):
        # JSON has no infinity, so null.
        "df": _finite(result.df_denominator),
        "n_readers": len(complete),
        "n_cases": len(cases),
    }


def _paired_row(a: str, b: str, metric: str, test: PairedTest, n_pairs: int) -> dict[str, Any]:
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "test": test.test,
        "statistic": test.statistic,
        "p_value": test.p_value,
        "estimate": test.estimate,
        "ci": list(test.ci) if test.ci else None,
        "ci_method": test.ci_method,
        "n_pairs": n_pairs,
    }


def compare(reads: Sequence[ReadFact], modes: Sequence[str], normal: str) -> list[dict[str, Any]]:
    """Every pair of modes (in the study's order; estimates are b − a)."""
    out: list[dict[str, Any]] = []
    for a, b in combinations(modes, 2):
        pairs = _pairs(reads, a, b)
        if not pairs:
            continue
        test = mcnemar([x.label == x.reference for x, _ in pairs], [y.label == y.reference for _, y in pairs])
        out.append(_paired_row(a, b, "accuracy", test, len(pairs)))
        times_a, times_b = [x.read_time_s for x, _ in pairs], [y.read_time_s for _, y in pairs]
        if any(x != y for x, y in zip(times_a, times_b, strict=True)):
            test = wilcoxon_signed_rank(times_b, times_a)
            shift = hodges_lehmann([y - x for x, y in zip(times_a, times_b, strict=True)])
            test = replace(test, estimate=shift.estimate, ci=shift.ci, ci_method=shift.ci_method)
            out.append(_paired_row(a, b, "read_time_s", test, len(pairs)))
        comparison = _auc_comparison(reads, a, b, normal)
        if comparison is not None:
            out.append(comparison)
    return out


def compare_with_ai(
    reads: Sequence[ReadFact], ai: Sequence[AiFact], arms: Sequence[str], normal: str
) -> list[dict[str, Any]]:
    """Each arm against the AI alone on the same cases (estimates are arm − AI)."""
    by_case = {f.case: f for f in ai}
    out: list[dict[str, Any]] = []
    for arm in arms:
        in_arm = [r for r in reads if r.mode == arm and r.case in by_case]
        if not in_arm:
            continue
        test = mcnemar(
            [by_case[r.case].label == r.reference for r in in_arm], [r.label == r.reference for r in in_arm]
        )
        test = replace(test, test=f"{test.test}, reader×case pairs pooled over readers")
        out.append(_paired_row(AI_ARM, arm, "accuracy", test, len(in_arm)))
        comparison = _auc_versus_ai(in_arm, by_case, arm, normal)
        if comparison is not None:
            out.append(comparison)
    return out


def _auc_versus_ai(
    in_arm: Sequence[ReadFact], by_case: dict[int, AiFact], arm: str, normal: str
) -> dict[str, Any] | None:
    cases = sorted({r.case for r in in_arm if by_case[r.case].p_abnormal is not None})
    by_key = {(r.reader, r.case): r for r in in_arm}
    complete = [j for j in sorted({r.reader for r in in_arm}) if all((j, c) in by_key for c in cases)]
    truth = np.array([by_case[c].reference != normal for c in cases], dtype=bool)
    if len(complete) < 2 or not cases or truth.all() or not truth.any():
        return None
    scores = np.array(
        [
            [abnormality_score(by_key[(j, c)].label, by_key[(j, c)].confidence, normal) for c in cases]
            for j in complete
        ],
        dtype=float,
    )
    standalone = np.array([by_case[c].p_abnormal for c in cases], dtype=float)
    result = mrmc.readers_versus_standalone(scores, standalone, truth)
    return {
        "a": AI_ARM,
        "b": arm,
        "metric": "auc",
        "test": "readers vs standalone AI, Obuchowski–Rockette (DeLong covariances, Hillis df)",
        "statistic": None if result.t_statistic is None else _finite(result.t_statistic),
        "p_value": result.p_value,
        "estimate": result.difference,
        "ci": list(result.difference_ci),
        "ci_method": "Obuchowski–Rockette (Hillis)",
        "df": _finite(result.df),
        "n_readers": len(complete),
        "n_cases": len(cases),
    }


def _arms(reads: Sequence[ReadFact], modes: Sequence[str]) -> list[str]:
    """The study's modes in order, with the unaided first answers just before the second reads."""
    has_unaided = any(r.mode == UNAIDED_ARM for r in reads)
    arms: list[str] = []
    for mode in modes:
        if mode == "second-read" and has_unaided:
            arms.append(UNAIDED_ARM)
        arms.append(mode)
    return arms


def _roc(
    reads: Sequence[ReadFact], ai: Sequence[AiFact], arms: Sequence[str], normal: str
) -> dict[str, list[list[float]]]:
    curves: dict[str, list[list[float]]] = {}
    for arm in arms:
        in_arm = [r for r in reads if r.mode == arm]
        truth = [r.reference != normal for r in in_arm]
        if any(truth) and not all(truth):
            scores = [abnormality_score(r.label, r.confidence, normal) for r in in_arm]
            curves[arm] = [list(p) for p in roc_points(scores, truth)]
    judged = [f for f in ai if f.p_abnormal is not None]
    truth = [f.reference != normal for f in judged]
    if any(truth) and not all(truth):
        curves[AI_ARM] = [list(p) for p in roc_points([f.p_abnormal or 0.0 for f in judged], truth)]
    return curves


def study_results(
    reads: Sequence[ReadFact], ai: Sequence[AiFact], modes: Sequence[str], classes: Sequence[str], normal: str
) -> dict[str, Any]:
    """``{modes: {mode: {..., per_reader: {reader: {...}}}}, second_read_unaided, ai_alone,
    comparisons, roc}``; ``reads`` may hold unaided first answers as mode UNAIDED_ARM."""
    arms = _arms(reads, modes)
    by_mode: dict[str, Any] = {}
    for mode in arms:
        in_mode = [r for r in reads if r.mode == mode]
        if not in_mode:
            by_mode[mode] = {"n_reads": 0}
            continue
        pooled = summarise(in_mode, classes, normal)
        pooled["per_reader"] = {
            reader: summarise([r for r in in_mode if r.reader == reader], classes, normal)
            for reader in sorted({r.reader for r in in_mode})
        }
        by_mode[mode] = pooled
    unaided = by_mode.pop(UNAIDED_ARM, None)
    return {
        "classes": list(classes),
        "modes": by_mode,
        "second_read_unaided": unaided,
        "ai_alone": ai_alone(ai, classes, normal) if ai else None,
        "comparisons": compare(reads, arms, normal) + compare_with_ai(reads, ai, arms, normal),
        "roc": _roc(reads, ai, arms, normal),
    }
