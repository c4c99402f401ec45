"""Confidence intervals that stay honest at the edges, each labelled with the method that made it.

A percentile bootstrap of a perfect score resamples nothing but perfect scores and reports
"1.000 (1.000–1.000)", as if 120 right answers out of 120 proved the model never errs. The exact
binomial (Clopper–Pearson) interval says what 120/120 does prove: a lower bound of 0.970. So:

- a proportion of independent units (patients) gets Clopper–Pearson on its count, always;
- a proportion of images is clustered by patient (images of one patient are alike), so it gets a
  patient-cluster bootstrap with BCa, and Clopper–Pearson on the count (labelled so) when the
  bootstrap degenerates: 0 or n successes, or every resample equal;
- any other statistic (AUROC, ECE) gets a BCa patient bootstrap, and the percentile interval of
  the same resamples (labelled so) when BCa degenerates.

Every interval is ``{"low", "high", "method"}`` in metrics.json.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

CLOPPER_PEARSON = "clopper-pearson"
WILSON = "wilson"
BCA = "bca-patient-bootstrap"
PERCENTILE = "percentile-patient-bootstrap"
# The fallbacks name why they were taken, so a reader of metrics.json never has to guess.
CLOPPER_PEARSON_FALLBACK = "clopper-pearson (count; patient bootstrap degenerate)"
PERCENTILE_FALLBACK = "percentile-patient-bootstrap (BCa degenerate)"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str

    def as_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "method": self.method}


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> Interval | None:
    """Exact two-sided binomial interval (Clopper & Pearson 1934) from beta quantiles.

    Guaranteed coverage of at least ``level``; at k = n the lower bound is (α/2)^(1/n), at k = 0
    the upper bound is 1 − (α/2)^(1/n). None when there are no trials.
    """
    if trials <= 0:
        return None
    alpha = 1.0 - level
    k, n = int(successes), int(trials)
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(low, high, CLOPPER_PEARSON)


def wilson(successes: int, trials: int, level: float = 0.95) -> Interval | None:
    """Wilson score interval: the set of p a score test at ``level`` does not reject.

    Shorter than Clopper–Pearson with coverage close to (not always above) ``level``; offered for
    a reader who prefers average over guaranteed coverage. None when there are no trials.
    """
    if trials <= 0:
        return None
    z = float(stats.norm.ppf(0.5 + level / 2))
    n, p = float(trials), successes / trials
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half), WILSON)


def proportion_interval(
    successes: int, trials: int, level: float = 0.95, method: str = CLOPPER_PEARSON
) -> Interval | None:
    """A proportion of independent units: Clopper–Pearson (the default) or Wilson."""
    if method == WILSON:
        return wilson(successes, trials, level)
    if method == CLOPPER_PEARSON:
        return clopper_pearson(successes, trials, level)
    raise ValueError(f"unknown proportion interval {method!r}")


def _group_rows(groups: Sequence[str]) -> list[np.ndarray]:
    group_array = np.asarray(groups)
    return [np.flatnonzero(group_array == g) for g in np.unique(group_array)]


def _bootstrap(
    n_groups: int,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int,
    seed: int,
    level: float,
    vectorized: bool,
) -> tuple[float, float, np.ndarray, bool]:
    """scipy's BCa bootstrap over group indices: (low, high, bootstrap values, degenerate)."""
    indices = np.arange(n_groups)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.bootstrap(
            (indices,),
            statistic,
            n_resamples=n_resamples,
            confidence_level=level,
            method="BCa",
            vectorized=vectorized,
            rng=np.random.default_rng(seed),
        )
    values = np.asarray(result.bootstrap_distribution, np.float64)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    degenerate = (
        any(issubclass(w.category, stats.DegenerateDataWarning) for w in caught)
        or not (math.isfinite(low) and math.isfinite(high))
        or not np.all(np.isfinite(values))
        or np.ptp(values) == 0
    )
    return low, high, values, degenerate


def cluster_proportion_interval(
    groups: Sequence[str],
    successes: Sequence[bool] | np.ndarray,
    eligible: Sequence[bool] | np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval | None:
    """An image-level proportion, images clustered by ``groups`` (patients).

    Of the ``eligible`` rows (all by default), the fraction that are ``successes``. BCa over
    resampled patients; Clopper–Pearson on the pooled count when that degenerates (0 or n
    successes, one patient, or a resample without eligible rows). The count interval treats
    images as independent, so it is narrower than the truth when images of a patient agree: the
    label says which one was used.
    """
    hit = np.asarray(successes, bool)
    mask = np.ones(hit.shape, bool) if eligible is None else np.asarray(eligible, bool)
    k, n = int((hit & mask).sum()), int(mask.sum())
    if n == 0:
        return None
    rows = _group_rows(groups)
    # Per-patient counts make each resample two sums: fast, and vectorised for scipy. Patients
    # without an eligible image take no part (a resample of them alone would divide by zero).
    hits = np.array([(hit & mask)[r].sum() for r in rows], np.float64)
    trials = np.array([mask[r].sum() for r in rows], np.float64)
    hits, trials = hits[trials > 0], trials[trials > 0]
    if 0 < k < n and len(trials) > 1:

        def ratio(idx: np.ndarray, axis: int = -1) -> np.ndarray:
            chosen = idx.astype(int)
            return hits[chosen].sum(axis=axis) / trials[chosen].sum(axis=axis)

        low, high, _, degenerate = _bootstrap(len(hits), ratio, n_resamples, seed, level, vectorized=True)
        if not degenerate:
            return Interval(low, high, BCA)
    fallback = clopper_pearson(k, n, level)
    assert fallback is not None
    return Interval(fallback.low, fallback.high, CLOPPER_PEARSON_FALLBACK)


def bca_interval(
    groups: Sequence[str],
    statistic: Callable[[np.ndarray], float | None],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval | None:
    """A statistic of rows (AUROC, ECE) with whole groups (patients) resampled: BCa.

    ``statistic(row indices)`` may return None (undefined, e.g. one class only): such a resample
    is NaN to scipy, which makes BCa degenerate; then the percentile interval of the defined
    resamples is reported and labelled as the fallback. None when no resample is defined.
    """
    rows = _group_rows(groups)

    def on_groups(idx: np.ndarray) -> float:
        value = statistic(np.concatenate([rows[i] for i in idx.astype(int)]))
        return math.nan if value is None else float(value)

    if len(rows) < 2:
        return None
    low, high, values, degenerate = _bootstrap(len(rows), on_groups, n_resamples, seed, level, False)
    if not degenerate:
        return Interval(low, high, BCA)
    defined = values[np.isfinite(values)]
    if defined.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    p_low, p_high = np.percentile(defined, [tail, 100.0 - tail])
    return Interval(float(p_low), float(p_high), PERCENTILE_FALLBACK)
