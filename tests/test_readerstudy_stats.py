"""Reader-study statistics against independent computations: scikit-learn, scipy, and for the
Obuchowski–Rockette analysis the Dorfman–Berbaum–Metz ANOVA of jackknife pseudo-values (Hillis
et al. 2005 show the two give the same F and Hillis df when OR uses jackknife covariances)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import roc_auc_score

from app.readerstudy import mrmc
from app.readerstudy.stats import (
    abnormality_score,
    accuracy,
    auc,
    confusion_matrix,
    hodges_lehmann,
    mcnemar,
    misdiagnosis_rate,
    roc_points,
    sensitivity_specificity,
    wilcoxon_signed_rank,
)

CLASSES = ["Anencephaly", "Holoprosencephaly", "normal"]


def test_accuracy_sensitivity_specificity_misdiagnosis_on_a_known_table() -> None:
    ref = ["normal", "normal", "normal", "Anencephaly", "Anencephaly", "Holoprosencephaly"]
    ans = ["normal", "Anencephaly", "normal", "Anencephaly", "Holoprosencephaly", "normal"]
    assert accuracy(ref, ans) == pytest.approx(3 / 6)
    sens, spec = sensitivity_specificity(ref, ans, CLASSES)
    assert sens == {"Anencephaly": 0.5, "Holoprosencephaly": 0.0, "normal": pytest.approx(2 / 3)}
    assert spec == {
        "Anencephaly": pytest.approx(3 / 4),
        "Holoprosencephaly": pytest.approx(4 / 5),
        "normal": 2 / 3,
    }
    # Normal called Anencephaly, and Holoprosencephaly called normal: 2 of 6; Anencephaly named
    # Holoprosencephaly is a wrong class but not a misdiagnosis of normal vs anomaly.
    assert misdiagnosis_rate(ref, ans, "normal") == pytest.approx(2 / 6)
    assert confusion_matrix(ref, ans, CLASSES) == sk_confusion(ref, ans, labels=CLASSES).tolist()


def test_auc_from_confidence_equals_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random(80) < 0.4
    labels = np.where(rng.random(80) < np.where(truth, 0.8, 0.25), "Anencephaly", "normal")
    conf = rng.integers(1, 6, 80)
    scores = [abnormality_score(str(lab), int(c), "normal") for lab, c in zip(labels, conf, strict=True)]
    assert sorted({abnormality_score("normal", c, "normal") for c in range(1, 6)}) == [1, 2, 3, 4, 5]
    assert sorted({abnormality_score("Anencephaly", c, "normal") for c in range(1, 6)}) == [6, 7, 8, 9, 10]
    assert auc(scores, truth) == pytest.approx(roc_auc_score(truth, scores))


@pytest.mark.parametrize("n,p_right", [(12, 0.7), (40, 0.6), (300, 0.55)])
def test_mcnemar_equals_scipy(n: int, p_right: float) -> None:
    rng = np.random.default_rng(n)
    a = list(rng.random(n) < 0.6)
    b = list(rng.random(n) < p_right)
    result = mcnemar(a, b)
    bb = sum(x and not y for x, y in zip(a, b, strict=True))
    cc = sum(y and not x for x, y in zip(a, b, strict=True))
    if bb + cc < 25:
        assert result.test == "mcnemar-exact"
        assert result.p_value == pytest.approx(sps.binomtest(bb, bb + cc, 0.5).pvalue, rel=1e-12)
    else:
        assert result.test == "mcnemar-chi2-cc"
        expected = sps.chi2.sf((abs(bb - cc) - 1) ** 2 / (bb + cc), 1)
        assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert result.estimate == pytest.approx(np.mean(b) - np.mean(a))
    assert result.ci[0] < result.estimate < result.ci[1]


def test_mcnemar_with_no_discordant_pairs_is_p_one() -> None:
    assert mcnemar([True, False], [True, False]).p_value == 1.0


@pytest.mark.parametrize("n,ties", [(9, False), (30, False), (70, False), (40, True)])
def test_wilcoxon_equals_scipy(n: int, ties: bool) -> None:
    rng = np.random.default_rng(n + ties)
    x = rng.gamma(3, 3, n)
    y = x + rng.normal(0.8, 2, n)
    if ties:
        x, y = np.round(x), np.round(y)  # tied magnitudes and zero differences
    result = wilcoxon_signed_rank(list(x), list(y))
    method = "exact" if result.test == "wilcoxon-exact" else "approx"
    assert (method == "exact") == (n <= 50 and not ties)
    expected = sps.wilcoxon(x, y, zero_method="wilcox", correction=False, method=method)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def _simulated_mrmc(t: int, r: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ordinal 1–10 scores with a modality effect, reader effects and case difficulty."""
    rng = np.random.default_rng(seed)
    truth = np.arange(c) % 3 == 0
    case = rng.normal(0, 1, c)
    reader = rng.normal(0, 0.3, r)
    latent = (
        truth[None, None, :] * (1.0 + 0.5 * np.arange(t)[:, None, None])
        + case[None, None, :]
        + reader[None, :, None]
        + rng.normal(0, 0.7, (t, r, c))
    )
    return np.clip(np.round(latent * 2 + 4), 1, 10), truth


def test_delong_covariance_equals_a_direct_computation_and_aucs_equal_scikit_learn() -> None:
    scores, truth = _simulated_mrmc(2, 3, 30, seed=4)
    theta = mrmc.auc_matrix(scores, truth)
    for i in range(2):
        for j in range(3):
            assert theta[i, j] == pytest.approx(roc_auc_score(truth, scores[i, j]))
    # DeLong (1988) written out with loops: structural components and their covariances.
    curves = scores.reshape(6, -1)
    pos, neg = np.flatnonzero(truth), np.flatnonzero(~truth)

    def psi(a: float, b: float) -> float:
        return 1.0 if a > b else 0.5 if a == b else 0.0

    v10 = [[np.mean([psi(s[p], s[q]) for q in neg]) for p in pos] for s in curves]
    v01 = [[np.mean([psi(s[p], s[q]) for p in pos]) for q in neg] for s in curves]
    expected = np.empty((6, 6))
    for a in range(6):
        for b in range(6):
            s10 = sum((v10[a][k] - np.mean(v10[a])) * (v10[b][k] - np.mean(v10[b])) for k in range(len(pos)))
            s01 = sum((v01[a][k] - np.mean(v01[a])) * (v01[b][k] - np.mean(v01[b])) for k in range(len(neg)))
            expected[a, b] = s10 / (len(pos) - 1) / len(pos) + s01 / (len(neg) - 1) / len(neg)
    np.testing.assert_allclose(mrmc.delong_covariance(scores, truth), expected, rtol=1e-12)


def _dbm(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """DBM with Hillis's denominator, from pseudo-values made with scikit-learn's AUC."""
    t, r, c = scores.shape
    y = np.empty((t, r, c))
    for i in range(t):
        for j in range(r):
            full = roc_auc_score(truth, scores[i, j])
            for k in range(c):
                keep = np.arange(c) != k
                y[i, j, k] = c * full - (c - 1) * roc_auc_score(truth[keep], scores[i, j, keep])
    g = y.mean()
    yi, yj, yk = y.mean(axis=(1, 2)), y.mean(axis=(0, 2)), y.mean(axis=(0, 1))
    yij, yik, yjk = y.mean(axis=2), y.mean(axis=1), y.mean(axis=0)
    ms_t = r * c * ((yi - g) ** 2).sum() / (t - 1)
    ms_tr = c * ((yij - yi[:, None] - yj[None, :] + g) ** 2).sum() / ((t - 1) * (r - 1))
    ms_tc = r * ((yik - yi[:, None] - yk[None, :] + g) ** 2).sum() / ((t - 1) * (c - 1))
    resid = (
        y
        - yij[:, :, None]
        - yik[:, None, :]
        - yjk[None, :, :]
        + yi[:, None, None]
        + yj[None, :, None]
        + yk[None, None, :]
        - g
    )
    ms_trc = (resid**2).sum() / ((t - 1) * (r - 1) * (c - 1))
    denom = ms_tr + max(ms_tc - ms_trc, 0.0)
    return ms_t / denom, denom**2 / (ms_tr**2 / ((t - 1) * (r - 1)))


@pytest.mark.parametrize("t,r,c,seed", [(2, 4, 36, 0), (3, 5, 30, 1), (2, 3, 24, 2)])
def test_obuchowski_rockette_with_jackknife_equals_dbm(t: int, r: int, c: int, seed: int) -> None:
    scores, truth = _simulated_mrmc(t, r, c, seed)
    result = mrmc.obuchowski_rockette(scores, truth, covariance="jackknife")
    f, ddf = _dbm(scores, truth)
    assert result.f_statistic == pytest.approx(f, rel=1e-9)
    assert result.df_denominator == pytest.approx(ddf, rel=1e-9)
    assert result.p_value == pytest.approx(sps.f.sf(f, t - 1, ddf), rel=1e-9)
    if t == 2:
        # The CI of the difference and the F test agree: 0 is outside exactly when p < 0.05.
        low, high = result.difference_ci
        assert (low > 0 or high < 0) == (result.p_value < 0.05)
        assert result.difference == pytest.approx(result.aucs[1].mean() - result.aucs[0].mean())


def test_identical_modalities_have_no_difference() -> None:
    scores, truth = _simulated_mrmc(1, 4, 30, seed=5)
    same = np.concatenate([scores, scores])
    result = mrmc.obuchowski_rockette(same, truth)
    assert result.difference == 0 and result.f_statistic == 0 and result.p_value == pytest.approx(1.0)
    low, high = result.modality[0].ci
    assert low < result.modality[0].auc < high
    with pytest.raises(ValueError):
        mrmc.obuchowski_rockette(scores[:, :1], truth)


def _accepted(d: np.ndarray, shift: float, exact: bool) -> bool:
    """scipy's two-sided signed-rank test of d − shift does not reject at 5 %."""
    result = sps.wilcoxon(
        d - shift, zero_method="wilcox", correction=False, method="exact" if exact else "approx"
    )
    return bool(result.pvalue > 0.05)


@pytest.mark.parametrize("n", [6, 7, 12, 25, 60])
def test_hodges_lehmann_interval_is_the_set_of_shifts_scipy_does_not_reject(n: int) -> None:
    rng = np.random.default_rng(n)
    d = rng.normal(1.5, 3.0, n)
    result = hodges_lehmann(d)
    i, j = np.triu_indices(n)
    walsh = np.unique((d[i] + d[j]) / 2)
    assert result.estimate == pytest.approx(float(np.median((d[i] + d[j]) / 2)))
    assert result.ci is not None
    low, high = result.ci
    # Every gap between neighbouring Walsh averages (and beyond both ends): inside the interval
    # exactly where the test inverted by scipy accepts the shift.
    probes = np.concatenate([[walsh[0] - 1], (walsh[1:] + walsh[:-1]) / 2, [walsh[-1] + 1]])
    for shift in probes:
        assert (low < shift < high) == _accepted(d, shift, exact=n <= 50), shift


def test_hodges_lehmann_has_no_interval_when_no_sign_pattern_can_reject() -> None:
    # With 5 pairs the smallest two-sided exact p is 2/32 > 0.05.
    result = hodges_lehmann([1.0, 2.0, 3.0, 4.0, 5.0])
    assert result.ci is None and result.estimate == 3.0
    assert hodges_lehmann([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).ci == (1.0, 6.0)  # p = 2/64 at the edge


def test_roc_points_equal_scikit_learn() -> None:
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(5)
    truth = rng.random(60) < 0.4
    scores = rng.integers(1, 11, 60).astype(float)
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    ours = roc_points(list(scores), list(truth))
    # scikit-learn starts at an infinite threshold, i.e. at (0, 0), as ours does.
    assert np.allclose(np.array(ours), np.column_stack([fpr, tpr]))


def test_readers_versus_a_constant_standalone_is_the_single_modality_interval_shifted() -> None:
    # An algorithm that scores every case alike has AUC 0.5 and no case variance, so the readers'
    # difference from it is their own OR single-modality estimate minus 0.5, with the same interval.
    rng = np.random.default_rng(11)
    truth = rng.random(40) < 0.5
    scores = truth[None, :] * rng.uniform(0.5, 2.0, (4, 1)) + rng.normal(0, 1, (4, 40))
    alone = mrmc.obuchowski_rockette(scores[None], truth).modality[0]
    versus = mrmc.readers_versus_standalone(scores, np.zeros(40), truth)
    assert versus.standalone_auc == 0.5
    assert versus.difference == pytest.approx(alone.auc - 0.5)
    assert versus.difference_ci[0] == pytest.approx(alone.ci[0] - 0.5)
    assert versus.difference_ci[1] == pytest.approx(alone.ci[1] - 0.5)
    assert versus.df == pytest.approx(alone.df)


def test_readers_versus_standalone_variance_from_explicit_delong_components() -> None:
    # The covariance of θ_j − θ_AI computed by hand from DeLong's structural components.
    rng = np.random.default_rng(3)
    truth = rng.random(50) < 0.45
    readers = truth[None, :] * 1.2 + rng.normal(0, 1, (3, 50))
    algorithm = truth * 1.5 + rng.normal(0, 1, 50)
    result = mrmc.readers_versus_standalone(readers, algorithm, truth)
    aucs = [roc_auc_score(truth, s) for s in readers]
    ai_auc = roc_auc_score(truth, algorithm)
    d = np.array(aucs) - ai_auc
    assert result.difference == pytest.approx(d.mean())
    assert result.standalone_auc == pytest.approx(ai_auc)

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = s[truth], s[~truth]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    v10 = [components(s)[0] - components(algorithm)[0] for s in readers]
    v01 = [components(s)[1] - components(algorithm)[1] for s in readers]
    cov = np.cov(np.array(v10)) / truth.sum() + np.cov(np.array(v01)) / (~truth).sum()
    r = 3
    cov2 = (cov.sum() - np.trace(cov)) / (r * (r - 1))
    denom = np.var(d, ddof=1) + r * max(cov2, 0.0)
    t = d.mean() / np.sqrt(denom / r)
    df = denom**2 / (np.var(d, ddof=1) ** 2 / (r - 1))
    assert result.t_statistic == pytest.approx(t)
    assert result.p_value == pytest.approx(2 * sps.t.sf(abs(t), df))
