from __future__ import annotations

import math

import numpy as np
import pytest

from app.training.trainer import learning_rate, patient_mean_probabilities, patient_nll, schedule_progress


def test_warmup_is_linear_then_cosine_reaches_zero() -> None:
    assert learning_rate(0, warmup=4, progress=0.0, peak=1.0) == pytest.approx(0.25)
    assert learning_rate(3, warmup=4, progress=0.0, peak=1.0) == pytest.approx(1.0)
    assert learning_rate(10, warmup=4, progress=0.5, peak=1.0) == pytest.approx(0.5)
    assert learning_rate(10, warmup=4, progress=1.0, peak=1.0) == pytest.approx(0.0, abs=1e-12)


def test_progress_follows_the_time_budget_when_it_runs_out_first() -> None:
    assert schedule_progress(step=14, total=104, warmup=4, elapsed=0.0, budget=None) == pytest.approx(0.1)
    assert schedule_progress(step=14, total=104, warmup=4, elapsed=50.0, budget=100.0) == pytest.approx(0.5)
    assert schedule_progress(step=94, total=104, warmup=4, elapsed=50.0, budget=100.0) == pytest.approx(0.9)


def test_patient_loss_is_nll_of_the_mean_softmax() -> None:
    probabilities = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    by_patient = patient_mean_probabilities(probabilities, ["a", "a", "b"])
    np.testing.assert_allclose(by_patient["a"], [0.6, 0.4])
    loss = patient_nll(by_patient, {"a": 0, "b": 1})
    assert loss == pytest.approx((-math.log(0.6) - math.log(0.9)) / 2)
