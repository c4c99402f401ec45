"""Multi-reader multi-case comparison of AUCs: Obuchowski–Rockette with Hillis's degrees of freedom.

Every reader reads every case in each of ``t`` modalities; ``scores[i, j, k]`` is reader ``j``'s
score of case ``k`` in modality ``i`` and ``truth[k]`` whether case ``k`` is positive. The AUCs'
error covariance over cases is estimated by DeLong's structural components or by the jackknife
over cases. Formulas: Obuchowski & Rockette (1995), Hillis (2007, Stat Med 26:596) for the
denominator degrees of freedom and the intervals (random readers and cases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

Covariance = Literal["delong", "jackknife"]
# AUC mean squares below this are rounding errors of equal numbers.
_ROUNDING = 1e-24


def auc_matrix(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """AUC of each (modality, reader): [t, r]."""
    pos, neg = scores[..., truth], scores[..., ~truth]
    psi = (pos[..., :, None] > neg[..., None, :]) + 0.5 * (pos[..., :, None] == neg[..., None, :])
    return psi.mean(axis=(-1, -2))


def delong_covariance(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """DeLong's covariance of the t·r AUCs, flattened modality-major: [t·r, t·r]."""
    flat = scores.reshape(-1, scores.shape[-1])
    pos, neg = flat[:, truth], flat[:, ~truth]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10 = psi.mean(axis=2)  # per positive case
    v01 = psi.mean(axis=1)  # per negative case
    return np.cov(v10) / pos.shape[1] + np.cov(v01) / neg.shape[1]


def jackknife_covariance(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Jackknife over cases of the t·r AUCs: (c−1)/c Σ_k (θ(k) − θ̄)(θ(k) − θ̄)ᵀ."""
    c = scores.shape[-1]
    loo = np.stack([auc_matrix(np.delete(scores, k, axis=-1), np.delete(truth, k)).ravel() for k in range(c)])
    centred = loo - loo.mean(axis=0)
    return (c - 1) / c * centred.T @ centred


@dataclass(frozen=True)
class ModalityAuc:
    auc: float
    ci: tuple[float, float]
    df: float


@dataclass(frozen=True)
class ORResult:
    aucs: np.ndarray  # [t, r]
    modality: list[ModalityAuc]
    difference: float  # θ_1 − θ_0 (t = 2), else NaN
    difference_ci: tuple[float, float] | None
    f_statistic: float
    df_denominator: float
    p_value: float
    covariance: Covariance
    var: float
    cov1: float
    cov2: float
    cov3: float


def _mean_of(cov: np.ndarray, t: int, r: int, same_modality: bool, same_reader: bool) -> float:
    values = [
        cov[i * r + j, i2 * r + j2]
        for i in range(t)
        for j in range(r)
        for i2 in range(t)
        for j2 in range(r)
        if (i == i2) == same_modality and (j == j2) == same_reader
    ]
    return float(np.mean(values)) if values else 0.0


def obuchowski_rockette(
    scores: np.ndarray, truth: np.ndarray, covariance: Covariance = "delong", alpha: float = 0.05
) -> ORResult:
    """The OR test that the modalities' reader-averaged AUCs are equal, with 1−alpha intervals.

    F = MS(T) / (MS(T×R) + r·max(Cov2 − Cov3, 0)) on (t−1, ddf_H) degrees of freedom, where
    ddf_H = (MS(T×R) + r·max(Cov2 − Cov3, 0))² / (MS(T×R)² / ((t−1)(r−1))). Needs ≥ 2 readers.
    """
    scores = np.asarray(scores, dtype=float)
    truth = np.asarray(truth, dtype=bool)
    t, r, _ = scores.shape
    if r < 2 or t < 1:
        raise ValueError("the OR analysis needs at least two readers")
    theta = auc_matrix(scores, truth)
    cov = (delong_covariance if covariance == "delong" else jackknife_covariance)(scores, truth)
    var = _mean_of(cov, t, r, True, True)
    cov1 = _mean_of(cov, t, r, False, True)
    cov2 = _mean_of(cov, t, r, True, False)
    cov3 = _mean_of(cov, t, r, False, False)

    modality: list[ModalityAuc] = []
    for i in range(t):
        # Single-modality interval (Hillis 2007): MS(R) of this modality and its own Cov2.
        ms_r = float(np.var(theta[i], ddof=1))
        block = cov[i * r : (i + 1) * r, i * r : (i + 1) * r]
        cov2_i = float((block.sum() - np.trace(block)) / (r * (r - 1)))
        denom = ms_r + r * max(cov2_i, 0.0)
        df = denom**2 / (ms_r**2 / (r - 1)) if ms_r > 0 else float("inf")
        half = float(sps.t.ppf(1 - alpha / 2, df)) * np.sqrt(denom / r)
        mean = float(theta[i].mean())
        modality.append(ModalityAuc(mean, (mean - half, mean + half), df))

    if t < 2:
        return ORResult(
            theta,
            modality,
            float("nan"),
            None,
            float("nan"),
            float("nan"),
            float("nan"),
            covariance,
            var,
            cov1,
            cov2,
            cov3,
        )
    grand = theta.mean()
    by_modality, by_reader = theta.mean(axis=1), theta.mean(axis=0)
    ms_t = r * float(((by_modality - grand) ** 2).sum()) / (t - 1)
    interaction = theta - by_modality[:, None] - by_reader[None, :] + grand
    ms_tr = float((interaction**2).sum()) / ((t - 1) * (r - 1))
    # Mean squares at rounding level are zeros: identical modalities differ by nothing (F = 0),
    # not by the ratio of two rounding errors.
    ms_t, ms_tr = (0.0 if ms_t < _ROUNDING else ms_t), (0.0 if ms_tr < _ROUNDING else ms_tr)
    denom = ms_tr + r * max(cov2 - cov3, 0.0)
    f = 0.0 if ms_t == 0.0 else (ms_t / denom if denom > 0 else float("inf"))
    ddf = denom**2 / (ms_tr**2 / ((t - 1) * (r - 1))) if ms_tr > 0 else float("inf")
    p = 1.0 if f == 0.0 else float(sps.f.sf(f, t - 1, ddf))
    difference, difference_ci = float("nan"), None
    if t == 2:
        difference = float(by_modality[1] - by_modality[0])
        half = float(sps.t.ppf(1 - alpha / 2, ddf)) * np.sqrt(2 / r * denom)
        difference_ci = (difference - half, difference + half)
    return ORResult(theta, modality, difference, difference_ci, f, ddf, p, covariance, var, cov1, cov2, cov3)


@dataclass(frozen=True)
class StandaloneComparison:
    readers_auc: float
    standalone_auc: float
    difference: float  # readers' mean AUC − the standalone AUC
    difference_ci: tuple[float, float]
    t_statistic: float | None
    df: float
    p_value: float


def readers_versus_standalone(
    scores: np.ndarray, standalone: np.ndarray, truth: np.ndarray, alpha: float = 0.05
) -> StandaloneComparison:
    """The readers' mean AUC against a standalone algorithm's AUC on the same cases, readers and
    cases random.

    The algorithm is one more "reader" whose AUC has no reader variance: the per-reader
    differences d_j = θ_j − θ_AI are analysed as one modality by Obuchowski–Rockette, with their
    DeLong covariance over cases C Σ Cᵀ (C subtracts the algorithm) and Hillis's degrees of
    freedom, as in the radiologists-versus-CAD analysis of Chakraborty (Observer Performance
    Methods, 2017, ch. 22). ``scores[j, k]``: reader j on case k; ``standalone[k]``: the algorithm.
    """
    scores = np.asarray(scores, dtype=float)
    standalone = np.asarray(standalone, dtype=float)
    truth = np.asarray(truth, dtype=bool)
    r = scores.shape[0]
    if r < 2:
        raise ValueError("the comparison needs at least two readers")
    stacked = np.vstack([scores, standalone[None, :]])[None]
    theta = auc_matrix(stacked, truth)[0]
    contrast = np.hstack([np.eye(r), -np.ones((r, 1))])
    d = contrast @ theta
    cov_d = contrast @ delong_covariance(stacked, truth) @ contrast.T
    ms_r = float(np.var(d, ddof=1))
    ms_r = 0.0 if ms_r < _ROUNDING else ms_r
    cov2 = float((cov_d.sum() - np.trace(cov_d)) / (r * (r - 1)))
    denom = ms_r + r * max(cov2, 0.0)
    df = denom**2 / (ms_r**2 / (r - 1)) if ms_r > 0 else float("inf")
    se = float(np.sqrt(denom / r))
    mean = float(d.mean())
    if se == 0.0:
        # No variance at all (every reader and the algorithm agree on every case pair).
        return StandaloneComparison(
            float(theta[:r].mean()), float(theta[r]), mean, (mean, mean), None, df, 1.0 if mean == 0 else 0.0
        )
    t = mean / se
    half = float(sps.t.ppf(1 - alpha / 2, df)) * se
    return StandaloneComparison(
        float(theta[:r].mean()),
        float(theta[r]),
        mean,
        (mean - half, mean + half),
        t,
        df,
        float(2 * sps.t.sf(abs(t), df)),
    )
