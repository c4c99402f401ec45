"""Patient aggregation: a pure function checked by hand and against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from app.inference.aggregate import INDETERMINATE, aggregate, vote_winner

CLASSES = ("Anencephaly", "Encephalocele_meningocele", "Holoprosencephaly", "normal", "Rachischisis")
NORMAL = "normal"


def test_mean_by_hand() -> None:
    probabilities = [
        [0.6, 0.1, 0.1, 0.1, 0.1],
        [0.2, 0.1, 0.1, 0.5, 0.1],
        [0.5, 0.2, 0.1, 0.1, 0.1],
    ]
    verdict = aggregate(probabilities, CLASSES, NORMAL)
    # Column means: 1.3/3, 0.4/3, 0.3/3, 0.7/3, 0.3/3.
    assert verdict.label == "Anencephaly"
    assert verdict.probabilities["Anencephaly"] == pytest.approx(1.3 / 3)
    assert verdict.probabilities["normal"] == pytest.approx(0.7 / 3)
    assert verdict.p_abnormal == pytest.approx(1 - 0.7 / 3)
    assert verdict.support == [0, 2, 1]  # P(Anencephaly): 0.6, 0.5, 0.2
    assert (verdict.n_used, verdict.n_excluded, verdict.aggregation) == (3, 0, "mean")
    assert verdict.votes is None and verdict.reason is None


@pytest.mark.parametrize("seed", range(20))
def test_mean_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    probabilities = rng.dirichlet(np.ones(5), size=n)
    excluded = rng.random(n) < 0.3
    verdict = aggregate(probabilities, CLASSES, NORMAL, excluded=excluded)
    kept = probabilities[~excluded]
    if len(kept) == 0:
        assert verdict.label == INDETERMINATE
        return
    reference = kept.mean(axis=0)
    assert verdict.label == CLASSES[int(np.argmax(reference))]
    np.testing.assert_allclose([verdict.probabilities[c] for c in CLASSES], reference)
    assert verdict.p_abnormal == pytest.approx(1 - reference[3])
    winner = int(np.argmax(reference))
    expected_support = [
        int(i) for i in np.flatnonzero(~excluded)[np.argsort(-kept[:, winner], kind="stable")]
    ]
    assert verdict.support == expected_support
    assert verdict.n_used == len(kept) and verdict.n_excluded == int(excluded.sum())


def test_vote_by_hand() -> None:
    probabilities = [
        [0.40, 0.35, 0.05, 0.10, 0.10],  # Anencephaly
        [0.05, 0.45, 0.05, 0.40, 0.05],  # Encephalocele
        [0.05, 0.50, 0.05, 0.35, 0.05],  # Encephalocele
        [0.96, 0.01, 0.01, 0.01, 0.01],  # Anencephaly
        [0.10, 0.10, 0.10, 0.60, 0.10],  # normal
        [0.30, 0.40, 0.10, 0.10, 0.10],  # Encephalocele
    ]
    verdict = aggregate(probabilities, CLASSES, NORMAL, method="vote")
    assert verdict.label == "Encephalocele_meningocele"
    assert verdict.votes == {
        "Anencephaly": 2,
        "Encephalocele_meningocele": 3,
        "Holoprosencephaly": 0,
        "normal": 1,
        "Rachischisis": 0,
    }
    # The mean rule disagrees here (column sums 1.86 vs 1.81); probabilities stay the means.
    assert aggregate(probabilities, CLASSES, NORMAL).label == "Anencephaly"
    assert verdict.probabilities["Anencephaly"] == pytest.approx(1.86 / 6)
    assert verdict.p_abnormal == pytest.approx(1 - 1.56 / 6)
    assert verdict.support[0] == 2  # P(Encephalocele) 0.50 is the strongest support


def test_vote_tie_is_broken_by_mean_probability() -> None:
    probabilities = [
        [0.55, 0.45, 0.0, 0.0, 0.0],  # Anencephaly
        [0.30, 0.70, 0.0, 0.0, 0.0],  # Encephalocele
    ]
    # One vote each; mean P: Anencephaly 0.425 < Encephalocele 0.575.
    assert aggregate(probabilities, CLASSES, NORMAL, method="vote").label == "Encephalocele_meningocele"


def test_vote_full_tie_goes_to_the_first_class_in_card_order() -> None:
    probabilities = [
        [0.0, 0.0, 0.0, 0.6, 0.4],  # normal
        [0.0, 0.0, 0.0, 0.4, 0.6],  # Rachischisis
    ]
    # One vote each and equal mean probability (0.5): card order puts "normal" before "Rachischisis".
    assert aggregate(probabilities, CLASSES, NORMAL, method="vote").label == "normal"
    winner, counts = vote_winner(np.array([4, 3]), np.array([0.0, 0.0, 0.0, 0.5, 0.5]))
    assert winner == 3 and counts.tolist() == [0, 0, 0, 1, 1]


def test_excluded_images_do_not_sway_the_verdict() -> None:
    good = [[0.1, 0.1, 0.1, 0.6, 0.1]] * 2
    bad = [[0.96, 0.01, 0.01, 0.01, 0.01]] * 5  # e.g. a non-CNS view the model is sure about
    verdict = aggregate(good + bad, CLASSES, NORMAL, excluded=[False] * 2 + [True] * 5)
    assert verdict.label == "normal"
    assert (verdict.n_used, verdict.n_excluded) == (2, 5)
    assert verdict.support == [0, 1]
    assert aggregate(good + bad, CLASSES, NORMAL).label == "Anencephaly"


@pytest.mark.parametrize("method", ["mean", "vote"])
def test_all_flagged_gives_indeterminate_with_a_reason(method: str) -> None:
    verdict = aggregate([[0.2] * 5] * 3, CLASSES, NORMAL, method=method, excluded=[True] * 3)
    assert verdict.label == INDETERMINATE and verdict.indeterminate
    assert verdict.probabilities == {} and verdict.p_abnormal is None
    assert (verdict.n_used, verdict.n_excluded) == (0, 3)
    assert "all 3 image(s) were flagged" in (verdict.reason or "")


def test_no_images_gives_indeterminate() -> None:
    verdict = aggregate(np.zeros((0, 5)), CLASSES, NORMAL)
    assert verdict.label == INDETERMINATE and verdict.reason == "no images to assess"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([[0.2] * 5], CLASSES, NORMAL, method="median")
    with pytest.raises(ValueError, match="one flag per image"):
        aggregate([[0.2] * 5], CLASSES, NORMAL, excluded=[True, False])


def test_inputs_are_not_modified() -> None:
    probabilities = np.random.default_rng(0).dirichlet(np.ones(5), size=4)
    before = probabilities.copy()
    aggregate(probabilities, CLASSES, NORMAL, method="vote", excluded=[False, True, False, False])
    np.testing.assert_array_equal(probabilities, before)
