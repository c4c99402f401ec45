"""No plane shortcut: the plane mix of a patient must not give away their class."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2_contingency
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.tree import DecisionTreeClassifier

from app.labels import PAPER_CLASSES
from app.synth import anatomy as dx
from app.synth.dataset import draw_planes, make_patient
from app.synth.planes import CNS_PLANES, HEAD_PLANES, PLANE_WEIGHTS, visible_planes
from app.synth.spine import SAGITTAL_SPINE

N_PER_CLASS = 200  # 1000 patients: the accuracy's standard error is about 0.013
SEED = 2024
IMAGES_PER_PATIENT = (5, 7)  # the generator's default


def _plane_counts() -> tuple[np.ndarray, np.ndarray]:
    """Per-patient plane counts and classes, from the generator's own plane stream."""
    features, labels = [], []
    for index in range(N_PER_CLASS * len(PAPER_CLASSES)):
        diagnosis = PAPER_CLASSES[index % len(PAPER_CLASSES)]
        planes = draw_planes(np.random.default_rng([SEED, index, 1]), diagnosis, IMAGES_PER_PATIENT)
        counts = Counter(planes)
        features.append([counts[p] for p in CNS_PLANES])
        labels.append(PAPER_CLASSES.index(diagnosis))
    return np.array(features), np.array(labels)


@pytest.fixture(scope="module")
def counts() -> tuple[np.ndarray, np.ndarray]:
    return _plane_counts()


@pytest.mark.parametrize(
    "model",
    [LogisticRegression(max_iter=1000), DecisionTreeClassifier(max_depth=4, random_state=0)],
    ids=["logistic", "tree"],
)
def test_plane_counts_alone_predict_the_class_no_better_than_chance(
    counts: tuple[np.ndarray, np.ndarray], model: object
) -> None:
    features, labels = counts
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    accuracy = cross_val_score(model, features, labels, cv=folds, scoring="accuracy").mean()
    # Chance is 0.20; the former per-class plane weights allowed about 0.73.
    assert accuracy <= 0.25, f"plane counts predict the class with accuracy {accuracy:.3f}"


def test_plane_distribution_does_not_depend_on_the_class(counts: tuple[np.ndarray, np.ndarray]) -> None:
    features, labels = counts
    table = np.array([features[labels == k].sum(axis=0) for k in range(len(PAPER_CLASSES))])
    assert (table > 0).all(), "every class is imaged in every plane"
    _, p_value, _, _ = chi2_contingency(table)
    assert p_value > 0.01, f"class x plane table: chi-square p = {p_value:.4f}"


def test_every_class_shares_one_plane_distribution() -> None:
    assert set(PLANE_WEIGHTS) == set(CNS_PLANES)
    rng = np.random.default_rng(0)
    for diagnosis in PAPER_CLASSES:
        picks = draw_planes(rng, diagnosis, (6, 6))
        assert len(set(picks)) >= 2


@pytest.mark.parametrize("count", [1, 3, 5, 6, 9])
def test_each_standard_plane_is_imaged_once_before_any_repeats(count: int) -> None:
    rng = np.random.default_rng(count)
    for diagnosis in PAPER_CLASSES:
        picks = draw_planes(rng, diagnosis, (count, count))
        assert len(picks) == count
        assert len(set(picks)) == min(count, len(CNS_PLANES))


def test_every_anomalous_patient_has_an_image_that_shows_the_lesion() -> None:
    for index in range(200):
        diagnosis = PAPER_CLASSES[index % len(PAPER_CLASSES)]
        anatomy = make_patient(5, index, diagnosis).anatomy
        planes = draw_planes(np.random.default_rng([5, index, 1]), diagnosis, IMAGES_PER_PATIENT)
        assert bool(set(planes) & visible_planes(anatomy)) == (diagnosis != dx.NORMAL)


def test_lesions_show_only_where_they_are_anatomically_visible() -> None:
    for index in range(200):
        anatomy = make_patient(5, index, PAPER_CLASSES[index % len(PAPER_CLASSES)]).anatomy
        shown = visible_planes(anatomy)
        if anatomy.diagnosis == dx.NORMAL:
            assert not shown
        elif anatomy.diagnosis == dx.ANENCEPHALY:
            assert shown == set(HEAD_PLANES)  # no vault in any head section; the spine is intact
        elif anatomy.diagnosis == dx.RACHISCHISIS:
            assert SAGITTAL_SPINE in shown and "coronal" not in shown
        else:  # encephalocele and holoprosencephaly are cranial: never the spine view
            assert shown and SAGITTAL_SPINE not in shown
