"""Reader-study metrics and paired tests as pure functions on plain sequences.

The tests compare each with an independent computation (scikit-learn, scipy): the p-values
here are computed from their definitions, not by calling the functions they are checked
against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

# McNemar's chi-square is a poor approximation with few discordant pairs; below this many the
# exact binomial test is used (a common rule of thumb, e.g. Fagerland et al. 2013 use 25).
MCNEMAR_EXACT_BELOW = 25
# The exact Wilcoxon distribution is enumerated up to this many non-zero differences without ties
# (2^n sign patterns, counted by dynamic programming over rank sums).
WILCOXON_EXACT_MAX_N = 50


def accuracy(reference: Sequence[str], answers: Sequence[str]) -> float:
    if len(reference) != len(answers) or not reference:
        raise ValueError("reference and answers must be non-empty and of one length")
    return sum(r == a for r, a in zip(reference, answers, strict=True)) / len(reference)


def sensitivity_specificity(
    reference: Sequence[str], answers: Sequence[str], classes: Sequence[str]
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """One-vs-rest per class; None where a class has no positives (or no negatives)."""
    sensitivity: dict[str, float | None] = {}
    specificity: dict[str, float | None] = {}
    for cls in classes:
        pos = [a == cls for r, a in zip(reference, answers, strict=True) if r == cls]
        neg = [a != cls for r, a in zip(reference, answers, strict=True) if r != cls]
        sensitivity[cls] = sum(pos) / len(pos) if pos else None
        specificity[cls] = sum(neg) / len(neg) if neg else None
    return sensitivity, specificity


def misdiagnosis_rate(reference: Sequence[str], answers: Sequence[str], normal: str) -> float:
    """Share of reads that get normal vs anomaly wrong: an anomaly called normal, or a normal case
    called an anomaly. An anomaly named as another anomaly is an error of class (accuracy), not a
    misdiagnosis in this sense."""
    if not reference:
        raise ValueError("no reads")
    wrong = sum((r == normal) != (a == normal) for r, a in zip(reference, answers, strict=True))
    return wrong / len(reference)


def abnormality_score(label: str, confidence: int, normal: str) -> int:
    """The answer and its confidence on one 1–10 scale of how abnormal the reader thinks the case is:
    a confident normal is 1, an unsure normal 5, an unsure anomaly 6, a confident anomaly 10. The
    ROC curve of the readers is drawn over this scale."""
    if not 1 <= confidence <= 5:
        raise ValueError("confidence is 1..5")
    return 6 - confidence if label == normal else 5 + confidence


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counted half."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(positive, dtype=bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        raise ValueError("the AUC needs positive and negative cases")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def mean_median(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.median(values))


@dataclass(frozen=True)
class PairedTest:
    test: str
    statistic: float
    p_value: float
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    ci_method: str | None = None


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], alpha: float = 0.05) -> PairedTest:
    """McNemar's test on paired correctness (the same reader and case in modes a and b).

    Exact (two-sided binomial on the discordant pairs, p = 0.5) with fewer than
    MCNEMAR_EXACT_BELOW discordant pairs; else the chi-square with continuity correction.
    ``estimate`` is accuracy(b) − accuracy(a) with its Wald interval for paired proportions.
    """
    if len(correct_a) != len(correct_b) or not correct_a:
        raise ValueError("paired, non-empty")
    n = len(correct_a)
    b = sum(1 for x, y in zip(correct_a, correct_b, strict=True) if x and not y)
    c = sum(1 for x, y in zip(correct_a, correct_b, strict=True) if y and not x)
    discordant = b + c
    diff = (c - b) / n
    se = math.sqrt(max(discordant - (c - b) ** 2 / n, 0.0)) / n
    z = float(sps.norm.ppf(1 - alpha / 2))
    ci = (diff - z * se, diff + z * se)
    if discordant == 0:
        return PairedTest("mcnemar-exact", 0.0, 1.0, diff, ci, "Wald (paired)")
    if discordant < MCNEMAR_EXACT_BELOW:
        k = min(b, c)
        tail = sum(math.comb(discordant, i) for i in range(k + 1)) / 2**discordant
        return PairedTest("mcnemar-exact", float(b), min(1.0, 2 * tail), diff, ci, "Wald (paired)")
    chi2 = (abs(b - c) - 1) ** 2 / discordant
    return PairedTest("mcnemar-chi2-cc", chi2, float(sps.chi2.sf(chi2, 1)), diff, ci, "Wald (paired)")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) with ties sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2
            start = end
    return ranks


def _exact_signed_rank_cdf(n: int) -> np.ndarray:
    """Counts of each rank sum W+ = 0..n(n+1)/2 over the 2^n sign patterns, as probabilities."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts / 2**n


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float]) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of x − y; zero differences are dropped (Wilcoxon's rule).

    Exact with at most WILCOXON_EXACT_MAX_N non-zero differences and no tied magnitudes; else the
    normal approximation with the tie correction, without continuity correction. ``statistic`` is
    min(W+, W−); ``estimate`` the median difference.
    """
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        raise ValueError("every difference is zero")
    ranks = _ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    total = n * (n + 1) / 2
    statistic = min(w_plus, total - w_plus)
    median = float(np.median(d))
    tied = len(np.unique(np.abs(d))) < n
    if n <= WILCOXON_EXACT_MAX_N and not tied:
        pmf = _exact_signed_rank_cdf(n)
        w = round(w_plus)
        p = 2 * min(pmf[: w + 1].sum(), pmf[w:].sum())
        return PairedTest("wilcoxon-exact", statistic, float(min(p, 1.0)), median)
    _, tie_counts = np.unique(np.abs(d), return_counts=True)
    variance = n * (n + 1) * (2 * n + 1) / 24 - float((tie_counts**3 - tie_counts).sum()) / 48
    z = (w_plus - total / 2) / math.sqrt(variance)
    return PairedTest("wilcoxon-normal", statistic, float(2 * sps.norm.sf(abs(z))), median)


@dataclass(frozen=True)
class ShiftEstimate:
    estimate: float
    ci: tuple[float, float] | None
    ci_method: str


def hodges_lehmann(d: Sequence[float], alpha: float = 0.05) -> ShiftEstimate:
    """The Hodges–Lehmann estimate of a paired shift (the median of the n(n+1)/2 Walsh averages of
    the differences) and its 1−alpha interval from inverting the two-sided signed-rank test
    (Hollander & Wolfe, Nonparametric Statistical Methods, §3.2).

    The test rejects a shift s when W+(s) ≤ c or W+(s) ≥ N − c, where W+(s) is the number of Walsh
    averages above s and c the largest count with P(W+ ≤ c) ≤ alpha/2: exact up to
    WILCOXON_EXACT_MAX_N differences, else the normal approximation. The interval is then
    [Walsh(c+1), Walsh(N−c)] of the sorted averages, and covers at least 1−alpha in the exact case.
    None when even the most extreme sign pattern cannot reject (too few pairs, e.g. n < 6 at 5 %).
    """
    x = np.asarray(d, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no differences")
    i, j = np.triu_indices(n)
    walsh = np.sort((x[i] + x[j]) / 2)
    total = len(walsh)
    estimate = float(np.median(walsh))
    if n <= WILCOXON_EXACT_MAX_N:
        cdf = np.cumsum(_exact_signed_rank_cdf(n))
        c = int(np.searchsorted(cdf, alpha / 2 * (1 + 1e-12), side="right")) - 1
        method = "Hodges–Lehmann, exact signed-rank inversion"
    else:
        sigma = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        c = math.floor(total / 2 - float(sps.norm.ppf(1 - alpha / 2)) * sigma)
        method = "Hodges–Lehmann, normal-approximation signed-rank inversion"
    if c < 0:
        return ShiftEstimate(estimate, None, method)
    return ShiftEstimate(estimate, (float(walsh[c]), float(walsh[total - c - 1])), method)


def roc_points(scores: Sequence[float], positive: Sequence[bool]) -> list[tuple[float, float]]:
    """The empirical ROC curve: (false-positive rate, true-positive rate) at every distinct score
    threshold from the highest down, starting at (0, 0) and ending at (1, 1)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        raise ValueError("the ROC curve needs positive and negative cases")
    points = [(0.0, 0.0)]
    for threshold in np.unique(s)[::-1]:
        called = s >= threshold
        points.append((float((called & ~y).sum() / n_neg), float((called & y).sum() / n_pos)))
    return points


def confusion_matrix(
    reference: Sequence[str], answers: Sequence[str], classes: Sequence[str]
) -> list[list[int]]:
    """Rows: the reference class; columns: the answer, both in ``classes`` order."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for r, a in zip(reference, answers, strict=True):
        matrix[index[r]][index[a]] += 1
    return matrix


__all__ = [
    "PairedTest",
    "ShiftEstimate",
    "abnormality_score",
    "accuracy",
    "auc",
    "confusion_matrix",
    "hodges_lehmann",
    "mcnemar",
    "mean_median",
    "misdiagnosis_rate",
    "roc_points",
    "sensitivity_specificity",
    "wilcoxon_signed_rank",
]
