"""Class-conditional Mahalanobis distance in feature space (Lee et al. 2018): a second OOD signal.

Each class c is a Gaussian N(mu_c, Sigma) over the model's pooled features (the `features`
output), with one covariance shared by all classes ("tied"): Sigma is the covariance of the
features about their own class mean, fitted on held-out in-distribution images. The score of an
image is its distance to the nearest class, min_c sqrt((x - mu_c)^T Sigma^-1 (x - mu_c)); higher
means less familiar.

With 128 features and a few hundred images the sample covariance is noisy and near singular, so
it is shrunk towards a multiple of the identity, (1 - a) * S + a * (tr S / K) * I, with the
Ledoit-Wolf intensity a (the estimator scikit-learn's `ledoit_wolf` computes), or a given a.
Pure numpy: serving reads the fitted means and precision from a small .npz file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Keys of the parameters file (ood.npz beside model.onnx).
NPZ_KEYS = ("means", "precision", "covariance", "shrinkage")


@dataclass(frozen=True)
class ClassGaussians:
    """Fitted class means [C, K], the shrunk tied covariance [K, K], its inverse and the shrinkage."""

    means: np.ndarray
    covariance: np.ndarray
    precision: np.ndarray
    shrinkage: float

    @property
    def width(self) -> int:
        return int(self.means.shape[1])


def class_means(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    missing = [c for c in range(n_classes) if not np.any(labels == c)]
    if missing:
        raise ValueError(f"no calibration image of class index {missing}: every class needs a mean")
    return np.stack([features[labels == c].mean(axis=0) for c in range(n_classes)])


def tied_covariance(features: np.ndarray, labels: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Maximum-likelihood covariance of the features about their class means (divides by N)."""
    residuals = np.asarray(features, np.float64) - means[np.asarray(labels)]
    return residuals.T @ residuals / len(residuals)


def ledoit_wolf_shrinkage(residuals: np.ndarray) -> float:
    """Ledoit-Wolf (2004) shrinkage intensity for already centred rows (as scikit-learn's
    ``ledoit_wolf_shrinkage(X, assume_centered=True)``): the a in [0, 1] minimising the expected
    squared error of (1 - a) S + a (tr S / K) I."""
    x = np.asarray(residuals, np.float64)
    n, k = x.shape
    squares = x**2
    trace = squares.sum() / n
    mu = trace / k
    beta_sum = (squares.T @ squares).sum()
    delta_sum = ((x.T @ x) ** 2).sum() / n**2
    beta = (beta_sum / n - delta_sum) / (k * n)
    delta = (delta_sum - 2.0 * mu * trace + k * mu**2) / k
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def shrink(covariance: np.ndarray, shrinkage: float) -> np.ndarray:
    """(1 - a) * S + a * (tr S / K) * I (scikit-learn's ``shrunk_covariance``)."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    k = covariance.shape[0]
    mu = np.trace(covariance) / k
    return (1.0 - shrinkage) * covariance + shrinkage * mu * np.eye(k)


def fit_class_gaussians(
    features: np.ndarray, labels: np.ndarray, n_classes: int, shrinkage: float | None = None
) -> ClassGaussians:
    """Class means and a shrunk tied covariance; ``shrinkage`` None = the Ledoit-Wolf intensity."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError("features must be a [N, K] array with N >= 2")
    labels = np.asarray(labels, np.int64)
    means = class_means(features, labels, n_classes)
    residuals = features - means[labels]
    alpha = ledoit_wolf_shrinkage(residuals) if shrinkage is None else float(shrinkage)
    covariance = shrink(residuals.T @ residuals / len(residuals), alpha)
    precision = np.linalg.inv(covariance)
    precision = (precision + precision.T) / 2.0  # exactly symmetric, so quadratic forms are too
    return ClassGaussians(means=means, covariance=covariance, precision=precision, shrinkage=alpha)


def class_distances(params: ClassGaussians, features: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of every row to every class mean, [N, C]."""
    features = np.atleast_2d(np.asarray(features, np.float64))
    if features.shape[1] != params.width:
        raise ValueError(f"features have width {features.shape[1]}, the fitted Gaussians {params.width}")
    diff = features[:, None, :] - params.means[None, :, :]
    squared = np.einsum("nck,kl,ncl->nc", diff, params.precision, diff)
    return np.sqrt(np.maximum(squared, 0.0))


def mahalanobis_score(params: ClassGaussians, features: np.ndarray) -> np.ndarray:
    """The OOD score per row: the distance to the nearest class mean (Lee et al. 2018)."""
    return class_distances(params, features).min(axis=1)


def _read_npz(path: Path | str, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every array of a parameters file (no pickles); ValueError naming the keys it lacks."""
    with np.load(Path(path), allow_pickle=False) as data:
        missing = [key for key in required if key not in data.files]
        if missing:
            raise ValueError(f"{Path(path).name} lacks {', '.join(missing)}")
        return {key: data[key] for key in data.files}


def save_class_gaussians(path: Path | str, params: ClassGaussians) -> Path:
    path = Path(path)
    with path.open("wb") as handle:
        np.savez(
            handle,
            means=params.means,
            covariance=params.covariance,
            precision=params.precision,
            shrinkage=np.float64(params.shrinkage),
        )
    return path


def load_class_gaussians(path: Path | str) -> ClassGaussians:
    """Read a parameters file; ValueError when it lacks a key or its shapes disagree."""
    data = _read_npz(path, NPZ_KEYS)
    means = np.asarray(data["means"], np.float64)
    covariance = np.asarray(data["covariance"], np.float64)
    precision = np.asarray(data["precision"], np.float64)
    shrinkage = float(data["shrinkage"])
    k = means.shape[1] if means.ndim == 2 else -1
    if k < 1 or covariance.shape != (k, k) or precision.shape != (k, k):
        raise ValueError(f"{Path(path).name}: means, covariance and precision shapes disagree")
    if not (np.isfinite(means).all() and np.isfinite(precision).all()):
        raise ValueError(f"{Path(path).name}: non-finite parameters")
    return ClassGaussians(means=means, covariance=covariance, precision=precision, shrinkage=shrinkage)


# --- View scope: a known-unknown reject class (non-CNS fetal views) in the same feature space ---

# Keys of the view-scope parameters file (ood_views.npz beside model.onnx).
VIEW_NPZ_KEYS = ("means", "other_means", "precision", "planes")


@dataclass(frozen=True)
class ViewScope:
    """The CNS class means [C, K], one mean per non-CNS plane [P, K] and the shared precision.

    The score of an image is min_c d(x, mu_c) - min_p d(x, nu_p), Mahalanobis distances d under
    the CNS tied precision: how much nearer the image lies to a non-CNS view than to any CNS
    class. Above the threshold, the image is more like an out-of-scope view than a CNS plane."""

    means: np.ndarray
    other_means: np.ndarray
    precision: np.ndarray
    planes: tuple[str, ...]
    # How near a non-CNS view mean an image must lie for "another fetal view" to be the reason
    # given (infinite: always); an image past it is far from every known view as well.
    radius: float = float("inf")

    @property
    def width(self) -> int:
        return int(self.means.shape[1])

    def within_radius(self, features: np.ndarray) -> np.ndarray:
        """Per row: whether the nearest non-CNS view mean lies within ``radius``."""
        features = np.atleast_2d(np.asarray(features, np.float64))
        return distances_to_means(self.other_means, self.precision, features).min(axis=1) <= self.radius


def fit_view_scope(gaussians: ClassGaussians, other_features: np.ndarray, planes: list[str]) -> ViewScope:
    """One mean per non-CNS plane (planes sorted by name), reusing the CNS Gaussians' precision."""
    other = np.asarray(other_features, np.float64)
    if other.ndim != 2 or len(other) < 1 or other.shape[1] != gaussians.width:
        raise ValueError(f"other-view features must be a [N, {gaussians.width}] array with N >= 1")
    if len(planes) != len(other):
        raise ValueError("one plane name per other-view image")
    names = sorted(set(planes))
    plane_of = np.array(planes)
    other_means = np.stack([other[plane_of == name].mean(axis=0) for name in names])
    return ViewScope(
        means=gaussians.means.copy(),
        other_means=other_means,
        precision=gaussians.precision.copy(),
        planes=tuple(names),
    )


def distances_to_means(means: np.ndarray, precision: np.ndarray, features: np.ndarray) -> np.ndarray:
    diff = features[:, None, :] - means[None, :, :]
    squared = np.einsum("nck,kl,ncl->nc", diff, precision, diff)
    return np.sqrt(np.maximum(squared, 0.0))


def view_scope_score(params: ViewScope, features: np.ndarray) -> np.ndarray:
    """Per row: distance to the nearest CNS class minus distance to the nearest non-CNS plane."""
    features = np.atleast_2d(np.asarray(features, np.float64))
    if features.shape[1] != params.width:
        raise ValueError(f"features have width {features.shape[1]}, the view-scope means {params.width}")
    d_cns = distances_to_means(params.means, params.precision, features).min(axis=1)
    d_other = distances_to_means(params.other_means, params.precision, features).min(axis=1)
    return d_cns - d_other


def save_view_scope(path: Path | str, params: ViewScope) -> Path:
    path = Path(path)
    with path.open("wb") as handle:
        np.savez(
            handle,
            means=params.means,
            other_means=params.other_means,
            precision=params.precision,
            planes=np.array(params.planes, dtype=np.str_),
            radius=np.float64(params.radius),
        )
    return path


def load_view_scope(path: Path | str) -> ViewScope:
    """Read a view-scope parameters file; ValueError when it lacks a key or its shapes disagree."""
    data = _read_npz(path, VIEW_NPZ_KEYS)
    means = np.asarray(data["means"], np.float64)
    other_means = np.asarray(data["other_means"], np.float64)
    precision = np.asarray(data["precision"], np.float64)
    planes = tuple(str(p) for p in data["planes"])
    radius = float(data["radius"]) if "radius" in data else float("inf")
    k = means.shape[1] if means.ndim == 2 else -1
    if k < 1 or other_means.ndim != 2 or other_means.shape[1] != k or precision.shape != (k, k):
        raise ValueError(f"{Path(path).name}: means, other_means and precision shapes disagree")
    if len(planes) != len(other_means):
        raise ValueError(f"{Path(path).name}: one plane name per other-view mean")
    if not (np.isfinite(means).all() and np.isfinite(other_means).all() and np.isfinite(precision).all()):
        raise ValueError(f"{Path(path).name}: non-finite parameters")
    if not radius > 0:
        raise ValueError(f"{Path(path).name}: the radius must be positive")
    return ViewScope(means=means, other_means=other_means, precision=precision, planes=planes, radius=radius)
