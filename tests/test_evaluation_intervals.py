"""Confidence intervals at the edges, against independent references.

References: scipy.stats.binomtest(...).proportion_ci (exact: root-finding on the binomial CDF,
not the beta quantiles app.evaluation.intervals uses; Wilson: scipy's own formula), the closed
forms of the Clopper-Pearson bounds at k = 0 and k = n, and scipy.stats.bootstrap called on the
data directly. statsmodels (proportion_confint) is not installed in this project's locks, so scipy
is the reference here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from training_support import tiny_synth_dir

from app.evaluation.intervals import (
    BCA,
    CLOPPER_PEARSON,
    CLOPPER_PEARSON_FALLBACK,
    PERCENTILE_FALLBACK,
    WILSON,
    bca_interval,
    clopper_pearson,
    cluster_proportion_interval,
    proportion_interval,
    wilson,
)
from app.evaluation.runner import per_class_intervals
from app.modelcard import metric_interval

__all__ = ["tiny_synth_dir"]

CASES = [
    (0, 1),
    (1, 1),
    (0, 24),
    (24, 24),
    (0, 120),
    (120, 120),
    (1, 120),
    (119, 120),
    (7, 24),
    (60, 120),
    (3, 10),
]


@pytest.mark.parametrize(("k", "n"), CASES)
def test_clopper_pearson_matches_scipys_exact_binomial_interval(k: int, n: int) -> None:
    found = clopper_pearson(k, n)
    reference = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert found is not None and found.method == CLOPPER_PEARSON
    assert found.low == pytest.approx(reference.low, abs=1e-9)
    assert found.high == pytest.approx(reference.high, abs=1e-9)


@pytest.mark.parametrize("n", [1, 10, 24, 120])
def test_clopper_pearson_edges_have_their_closed_forms(n: int) -> None:
    # k = n: P(all n right | p) = p^n = α/2 at the lower bound; k = 0 mirrors it.
    perfect, none = clopper_pearson(n, n), clopper_pearson(0, n)
    assert perfect is not None and none is not None
    assert perfect.low == pytest.approx(0.025 ** (1 / n)) and perfect.high == 1.0
    assert none.low == 0.0 and none.high == pytest.approx(1 - 0.025 ** (1 / n))


def test_the_issues_numbers() -> None:
    assert round(clopper_pearson(120, 120).low, 3) == 0.970  # type: ignore[union-attr]
    assert round(clopper_pearson(24, 24).low, 3) == 0.858  # type: ignore[union-attr]
    # One-sided 95 %: the two-sided 90 % interval's lower bound.
    assert round(clopper_pearson(120, 120, level=0.90).low, 3) == 0.975  # type: ignore[union-attr]


@pytest.mark.parametrize(("k", "n"), CASES)
def test_wilson_matches_scipys_wilson_interval(k: int, n: int) -> None:
    found = wilson(k, n)
    reference = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert found is not None and found.method == WILSON
    assert found.low == pytest.approx(reference.low, abs=1e-9)
    assert found.high == pytest.approx(reference.high, abs=1e-9)


def test_no_trials_gives_no_interval_and_an_unknown_method_is_refused() -> None:
    assert clopper_pearson(0, 0) is None and wilson(0, 0) is None
    assert proportion_interval(3, 4, method=WILSON) == wilson(3, 4)
    with pytest.raises(ValueError, match="unknown"):
        proportion_interval(3, 4, method="percentile")


def test_a_perfect_score_never_yields_one_to_one() -> None:
    groups = [f"p{i // 4}" for i in range(480)]
    for found in (
        clopper_pearson(120, 120),
        wilson(120, 120),
        cluster_proportion_interval(groups, np.ones(480, bool)),
        cluster_proportion_interval(groups, np.zeros(480, bool), np.zeros(480, bool) | True),
    ):
        assert found is not None and (found.low, found.high) != (1.0, 1.0)
        assert found.high - found.low > 0
    # Per class, patient level, every prediction right: 24 per class as in the held-out set.
    truth = np.repeat(np.arange(5), 24)
    per_class = per_class_intervals(truth, truth, [f"c{i}" for i in range(5)])
    for intervals in per_class.values():
        for key in ("sensitivity", "ppv"):
            assert intervals[key] == {
                "low": pytest.approx(0.025 ** (1 / 24)),
                "high": 1.0,
                "method": CLOPPER_PEARSON,
            }
        assert intervals["specificity"]["low"] == pytest.approx(0.025 ** (1 / 96))


def test_a_degenerate_image_proportion_falls_back_to_clopper_pearson_on_the_count() -> None:
    groups = [f"p{i // 4}" for i in range(40)]
    found = cluster_proportion_interval(groups, np.ones(40, bool))
    reference = clopper_pearson(40, 40)
    assert found is not None and reference is not None
    assert found.method == CLOPPER_PEARSON_FALLBACK
    assert (found.low, found.high) == (reference.low, reference.high)


def test_cluster_bootstrap_equals_scipys_bca_over_patients() -> None:
    """Per-patient (hits, images) resampled as pairs by scipy itself gives the same interval."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 7, 60)
    groups = [f"p{i}" for i, size in enumerate(sizes) for _ in range(size)]
    hits = rng.random(len(groups)) < 0.8
    found = cluster_proportion_interval(groups, hits, n_resamples=4000, seed=3)
    per_patient = [(hits[[j for j, g in enumerate(groups) if g == p]]) for p in sorted(set(groups))]
    hit_counts = np.array([h.sum() for h in per_patient], float)
    totals = np.array([len(h) for h in per_patient], float)
    reference = stats.bootstrap(
        (hit_counts, totals),
        lambda h, t, axis=-1: h.sum(axis=axis) / t.sum(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=4000,
        method="BCa",
        rng=np.random.default_rng(11),
    ).confidence_interval
    assert found is not None and found.method == BCA
    assert found.low < hits.mean() < found.high
    # Different resamples, same method: the endpoints agree to within Monte Carlo error.
    assert found.low == pytest.approx(reference.low, abs=0.012)
    assert found.high == pytest.approx(reference.high, abs=0.012)


def test_bca_interval_equals_scipys_bca_on_independent_rows() -> None:
    rng = np.random.default_rng(8)
    values = rng.gamma(2.0, 1.0, 80)
    groups = [f"p{i:03d}" for i in range(80)]  # sorted like the rows, one row per patient
    found = bca_interval(groups, lambda rows: float(values[rows].mean()), n_resamples=2000, seed=4)
    reference = stats.bootstrap(
        (values,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(4)
    ).confidence_interval
    assert found is not None and found.method == BCA
    # The same seed draws the same patients: scipy resampling indices or values is one resample.
    assert found.low == pytest.approx(reference.low, rel=1e-9)
    assert found.high == pytest.approx(reference.high, rel=1e-9)


def test_bca_degenerate_falls_back_to_the_percentile_interval_and_says_so() -> None:
    groups = [f"p{i}" for i in range(30)]
    found = bca_interval(groups, lambda rows: 1.0, n_resamples=200)
    assert found is not None and found.method == PERCENTILE_FALLBACK
    assert (found.low, found.high) == (1.0, 1.0)
    # A statistic undefined on some resamples (None) is NaN to scipy: percentile of the rest.
    values = np.arange(30, dtype=float)
    partly = bca_interval(
        groups, lambda rows: None if values[rows].max() < 29 else float(values[rows].mean()), n_resamples=300
    )
    assert partly is not None and partly.method == PERCENTILE_FALLBACK
    assert bca_interval(["only"], lambda rows: 1.0) is None


def test_metric_interval_reads_both_layouts() -> None:
    assert metric_interval({"low": 0.9, "high": 1.0, "method": "clopper-pearson"}) == (
        0.9,
        1.0,
        "clopper-pearson",
    )
    assert metric_interval([0.75, 0.95]) == (0.75, 0.95, None)
    assert metric_interval(None) is None and metric_interval([None, 1.0]) is None


def test_the_report_reads_old_bare_intervals_as_the_percentile_bootstrap_they_were() -> None:
    from app.evaluation.report import _ci, _ci_method

    old = {"confidence_intervals": {"image_accuracy": [0.9, 0.95], "image_ece": None}}
    assert (_ci(old, "image_accuracy"), _ci_method(old, "image_accuracy")) == (
        "0.900–0.950",
        "percentile-patient-bootstrap",
    )
    assert (_ci(old, "image_ece"), _ci_method(old, "image_ece")) == ("–", "–")
    new = {"confidence_intervals": {"image_accuracy": {"low": 0.9, "high": 0.95, "method": BCA}}}
    assert (_ci(new, "image_accuracy"), _ci_method(new, "image_accuracy")) == ("0.900–0.950", BCA)


def test_runner_patient_accuracy_interval_of_a_perfect_result_is_the_exact_bound(
    tiny_model_dir: Path, tiny_synth_dir: Path, tmp_path: Path
) -> None:
    """Evaluate on the patients the runner's own verdict gets right: a perfect patient accuracy."""
    from app.evaluation.runner import evaluate_model, patient_verdict, score_images, verdict_index
    from app.inference.engine import InferenceEngine
    from app.training.data import discover_samples

    engine = InferenceEngine(tiny_model_dir)
    records, _ = score_images(engine, discover_samples(tiny_synth_dir, engine.classes), tolerance_px=5)
    subset = tmp_path / "right"
    for patient in sorted({r.sample.patient for r in records}):
        rows = [i for i, r in enumerate(records) if r.sample.patient == patient]
        label = records[rows[0]].sample.label
        if verdict_index(patient_verdict(engine, records, rows, "mean"), engine.classes) == label:
            folder = records[rows[0]].sample.path.parent
            shutil.copytree(folder, subset / engine.classes[label] / patient)
    n = len(list(subset.glob("*/*")))
    assert n >= 1, "the tiny model got no patient right; pick another seed"
    metrics = evaluate_model(tiny_model_dir, subset, n_bootstrap=20).metrics
    assert metrics["summary"]["patient_accuracy_mean"] == 1.0
    interval = metrics["confidence_intervals"]["patient_accuracy_mean"]
    exact = stats.binomtest(n, n).proportion_ci(method="exact")
    assert interval["method"] == CLOPPER_PEARSON
    assert interval["low"] == pytest.approx(exact.low) == pytest.approx(0.025 ** (1 / n))
    assert interval["high"] == 1.0
    for name, found in metrics["confidence_intervals"].items():
        assert found is None or set(found) == {"low", "high", "method"}, name
        assert found is None or found["method"] in metrics["interval_methods"], name
