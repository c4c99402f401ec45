"""The Mahalanobis OOD signal against scikit-learn and scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from sklearn.covariance import EmpiricalCovariance, ShrunkCovariance, ledoit_wolf, ledoit_wolf_shrinkage

from app.inference.mahalanobis import (
    class_distances,
    class_means,
    fit_class_gaussians,
    load_class_gaussians,
    mahalanobis_score,
    save_class_gaussians,
    tied_covariance,
)
from app.inference.mahalanobis import (
    ledoit_wolf_shrinkage as our_ledoit_wolf_shrinkage,
)


def clusters(n: int = 300, k: int = 12, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(scale=4.0, size=(classes, k))
    mixing = rng.normal(size=(k, k))
    return centres[labels] + rng.normal(size=(n, k)) @ mixing, labels


def test_tied_covariance_is_sklearns_empirical_covariance_of_class_residuals() -> None:
    x, y = clusters()
    means = class_means(x, y, 3)
    residuals = x - means[y]
    expected = EmpiricalCovariance(assume_centered=True).fit(residuals).covariance_
    np.testing.assert_allclose(tied_covariance(x, y, means), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(means[1], x[y == 1].mean(axis=0))


def test_shrinkage_is_ledoit_wolf_as_sklearn_computes_it() -> None:
    x, y = clusters(n=80, k=40)  # few rows for the width: a real need to shrink
    params = fit_class_gaussians(x, y, 3)
    residuals = x - params.means[y]
    assert our_ledoit_wolf_shrinkage(residuals) == pytest.approx(
        ledoit_wolf_shrinkage(residuals, assume_centered=True), rel=1e-9
    )
    covariance, alpha = ledoit_wolf(residuals, assume_centered=True)
    assert params.shrinkage == pytest.approx(alpha, rel=1e-9) and 0 < alpha < 1
    np.testing.assert_allclose(params.covariance, covariance, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(params.precision @ params.covariance, np.eye(40), atol=1e-8)


def test_a_given_shrinkage_matches_sklearns_shrunk_covariance() -> None:
    x, y = clusters()
    params = fit_class_gaussians(x, y, 3, shrinkage=0.2)
    residuals = x - params.means[y]
    expected = ShrunkCovariance(shrinkage=0.2, assume_centered=True).fit(residuals)
    np.testing.assert_allclose(params.covariance, expected.covariance_, rtol=1e-10)
    np.testing.assert_allclose(params.precision, expected.precision_, rtol=1e-6, atol=1e-10)
    with pytest.raises(ValueError, match="shrinkage"):
        fit_class_gaussians(x, y, 3, shrinkage=1.5)


def test_score_is_the_distance_to_the_nearest_class_as_scipy_computes_it() -> None:
    x, y = clusters()
    params = fit_class_gaussians(x, y, 3)
    probes = np.vstack([x[:5], np.random.default_rng(1).normal(scale=30.0, size=(3, 12))])
    distances = class_distances(params, probes)
    for i, row in enumerate(probes):
        expected = [mahalanobis(row, params.means[c], params.precision) for c in range(3)]
        np.testing.assert_allclose(distances[i], expected, rtol=1e-9)
    np.testing.assert_allclose(mahalanobis_score(params, probes), distances.min(axis=1))
    # Far-away points score higher than the fitted data.
    scores = mahalanobis_score(params, probes)
    assert scores[5:].min() > scores[:5].max()


def test_every_class_needs_calibration_images() -> None:
    x, y = clusters()
    with pytest.raises(ValueError, match="class index \\[3\\]"):
        fit_class_gaussians(x, y, 4)


def test_parameters_round_trip_through_npz(tmp_path: Path) -> None:
    x, y = clusters()
    params = fit_class_gaussians(x, y, 3)
    loaded = load_class_gaussians(save_class_gaussians(tmp_path / "ood.npz", params))
    np.testing.assert_array_equal(loaded.means, params.means)
    np.testing.assert_array_equal(loaded.precision, params.precision)
    assert loaded.shrinkage == params.shrinkage
    np.savez(tmp_path / "bad.npz", means=params.means)
    with pytest.raises(ValueError, match="lacks"):
        load_class_gaussians(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="width"):
        class_distances(params, np.zeros((1, 5)))
