"""Temperature scaling (Guo et al. 2017): probabilities softmax(logits / T) with one fitted T > 0.

Dividing every logit by the same T never changes which class is largest, so labels, accuracy and
AUROC stay as they are; only how confident the probabilities are changes. T is fitted on held-out
patients' images by minimising the negative log-likelihood of their true classes.

Serving needs only `scaled_softmax` (numpy). `fit_temperature` imports scipy when called: scipy
comes with the evaluation and training extras, not with the serving install.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.inference.scores import softmax

# The search range of T. Far wider than any useful calibration (a network is rarely off by more
# than a factor 10), and bounded so that a separable set (NLL → 0 as T → 0) cannot run away.
MIN_TEMPERATURE = 1e-2
MAX_TEMPERATURE = 1e2


def scaled_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / T)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be above 0 (got {temperature!r})")
    return softmax(np.asarray(logits, np.float64) / float(temperature))


def negative_log_likelihood(
    logits: np.ndarray, labels: Sequence[int] | np.ndarray, temperature: float
) -> float:
    """Mean −log softmax(logits / T)[true class], computed as logsumexp − logit (no log of 0)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    y = np.asarray(labels, int)
    peak = z.max(axis=1)
    log_norm = peak + np.log(np.exp(z - peak[:, None]).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    nll_before: float
    nll_after: float


def fit_temperature(
    logits: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    bounds: tuple[float, float] = (MIN_TEMPERATURE, MAX_TEMPERATURE),
) -> TemperatureFit:
    """The T minimising the NLL of softmax(logits / T), by a bounded scalar search over log T.

    The NLL is convex in 1/T, hence unimodal in log T, so Brent's bounded method finds the
    minimum; searching log T makes the step sizes relative and keeps T > 0 by construction.
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, int)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError("need logits [N, C] and N labels, N ≥ 1")
    low, high = math.log(bounds[0]), math.log(bounds[1])
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(z, y, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    temperature = float(math.exp(result.x))
    return TemperatureFit(
        temperature=temperature,
        nll_before=negative_log_likelihood(z, y, 1.0),
        nll_after=negative_log_likelihood(z, y, temperature),
    )
