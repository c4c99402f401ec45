"""Patient aggregation: a pure function checked by hand and against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import gmean

from app.inference.aggregate import (
    FAILED,
    INDETERMINATE,
    OOD,
    QUALITY,
    aggregate,
    geometric_mean_probabilities,
    vote_winner,
)
from app.modelcard import VerdictRule

CLASSES = ("Anencephaly", "Encephalocele_meningocele", "Holoprosencephaly", "normal", "Rachischisis")
NORMAL = "normal"
# No gate: for checking the arithmetic of the rules on any number of usable images.
UNGATED = VerdictRule(min_usable_images=1, max_excluded_fraction=1.0)


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
    verdict = aggregate(probabilities, CLASSES, NORMAL, excluded=excluded, rule=UNGATED)
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


@pytest.mark.parametrize("seed", range(20))
def test_geomean_matches_scipy_gmean(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    probabilities = rng.dirichlet(np.ones(5), size=n)
    excluded = rng.random(n) < 0.3
    verdict = aggregate(probabilities, CLASSES, NORMAL, "geomean", excluded=excluded, rule=UNGATED)
    kept = probabilities[~excluded]
    if len(kept) == 0:
        assert verdict.label == INDETERMINATE
        return
    reference = gmean(kept, axis=0)
    reference = reference / reference.sum()
    assert verdict.label == CLASSES[int(np.argmax(reference))]
    np.testing.assert_allclose([verdict.probabilities[c] for c in CLASSES], reference, rtol=1e-10)
    assert verdict.p_abnormal == pytest.approx(1 - reference[3])
    assert verdict.aggregation == "geomean"


def test_geomean_lets_the_one_image_that_shows_the_lesion_count() -> None:
    # Four normal-looking views of a Rachischisis fetus (any class but Anencephaly fits them)
    # and one sagittal spine view that shows the open spine: the mean sides with the
    # normal-looking majority, the product with the evidence.
    looks_normal = [0.0, 0.15, 0.2, 0.45, 0.2]
    open_spine = [0.0, 0.0, 0.0, 0.02, 0.98]
    probabilities = [looks_normal] * 4 + [open_spine]
    assert aggregate(probabilities, CLASSES, NORMAL, "mean").label == "normal"
    assert aggregate(probabilities, CLASSES, NORMAL, "geomean").label == "Rachischisis"


def test_geomean_survives_underflow_and_many_images() -> None:
    probabilities = np.full((500, 5), 1e-30)
    probabilities[:, 3] = 1.0
    probabilities[0] = [0.0, 0.0, 0.0, 1.0, 0.0]  # exact zeros from a float32 softmax
    combined = geometric_mean_probabilities(probabilities)
    assert np.isfinite(combined).all() and combined.sum() == pytest.approx(1.0)
    assert int(np.argmax(combined)) == 3


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
    verdict = aggregate(good + bad, CLASSES, NORMAL, excluded=[False] * 2 + [True] * 5, rule=UNGATED)
    assert verdict.label == "normal"
    assert (verdict.n_used, verdict.n_excluded, verdict.n_total) == (2, 5, 7)
    assert verdict.support == [0, 1]
    assert aggregate(good + bad, CLASSES, NORMAL).label == "Anencephaly"
    # Under the default gate, 5 of 7 left out is more than half: no verdict at all.
    assert aggregate(good + bad, CLASSES, NORMAL, excluded=[False] * 2 + [True] * 5).indeterminate


@pytest.mark.parametrize("method", ["mean", "vote"])
def test_all_flagged_gives_indeterminate_with_a_reason(method: str) -> None:
    verdict = aggregate([[0.2] * 5] * 3, CLASSES, NORMAL, method=method, excluded=[True] * 3)
    assert verdict.label == INDETERMINATE and verdict.indeterminate
    assert verdict.probabilities == {} and verdict.p_abnormal is None
    assert (verdict.n_used, verdict.n_excluded, verdict.n_total) == (0, 3, 3)
    assert verdict.reason == "all 3 image(s) were left out: 3 flagged as unusable"


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


# ---- the gate (the model card's VerdictRule: K usable images, at most half left out) -------
ABNORMAL_ROW = [0.7, 0.1, 0.1, 0.05, 0.05]
NORMAL_ROW = [0.05, 0.05, 0.05, 0.8, 0.05]


def study(n_usable: int, **left_out: int) -> tuple[list[list[float]], list[str | None]]:
    """``n_usable`` confident anomaly images, then ``left_out`` images per reason key."""
    rows = [ABNORMAL_ROW] * n_usable
    reasons: list[str | None] = [None] * n_usable
    for key, count in left_out.items():
        rows += [NORMAL_ROW] * count  # left-out images would say "normal": they must not count
        reasons += [key] * count
    return rows, reasons


@pytest.mark.parametrize("k", [2, 3, 5])
def test_k_minus_one_usable_images_give_no_verdict_and_k_do(k: int) -> None:
    rule = VerdictRule(min_usable_images=k, max_excluded_fraction=0.5)
    rows, reasons = study(k - 1)
    short = aggregate(rows, CLASSES, NORMAL, reasons=reasons, rule=rule)
    assert short.indeterminate and short.p_abnormal is None and short.support == []
    assert (short.n_used, short.n_excluded, short.n_total) == (k - 1, 0, k - 1)
    assert short.reason == (
        f"only {k - 1} of {k - 1} image(s) could be used; a patient verdict needs at least {k} usable images"
    )
    rows, reasons = study(k)
    enough = aggregate(rows, CLASSES, NORMAL, reasons=reasons, rule=rule)
    assert enough.label == "Anencephaly" and enough.reason is None
    assert (enough.n_used, enough.n_excluded, enough.n_total) == (k, 0, k)


def test_the_default_rule_needs_two_usable_images() -> None:
    assert aggregate([ABNORMAL_ROW], CLASSES, NORMAL).indeterminate
    assert aggregate([ABNORMAL_ROW] * 2, CLASSES, NORMAL).label == "Anencephaly"


def test_exactly_half_out_of_distribution_still_gives_a_verdict() -> None:
    rows, reasons = study(4, ood=4)
    verdict = aggregate(rows, CLASSES, NORMAL, reasons=reasons)
    # The mean of the 4 usable rows only: P(Anencephaly) 0.7, P(normal) 0.05.
    assert verdict.label == "Anencephaly" and verdict.p_abnormal == pytest.approx(0.95)
    assert (verdict.n_used, verdict.n_excluded, verdict.n_total) == (4, 4, 8)
    assert verdict.excluded_by_reason == {OOD: 4} and verdict.support == [0, 1, 2, 3]


def test_one_more_than_half_out_of_distribution_gives_no_verdict() -> None:
    rows, reasons = study(3, ood=4)
    verdict = aggregate(rows, CLASSES, NORMAL, reasons=reasons)
    assert verdict.indeterminate and verdict.probabilities == {}
    assert (verdict.n_used, verdict.n_excluded, verdict.n_total) == (3, 4, 7)
    assert verdict.reason == (
        "4 of 7 images were left out (4 unlike the images the model was trained on (out of distribution)); "
        "the model judges a study only when at most 50% of its images are left out"
    )


def test_twelve_of_thirteen_flagged_is_indeterminate_though_one_image_survives() -> None:
    """A folder of 13 photographs: 12 flagged out of distribution, 1 gets through."""
    rows, reasons = study(1, ood=12)
    for method in ("mean", "vote"):
        verdict = aggregate(rows, CLASSES, NORMAL, method=method, reasons=reasons)
        assert verdict.indeterminate and verdict.p_abnormal is None and verdict.support == []
        assert (verdict.n_used, verdict.n_excluded, verdict.n_total) == (1, 12, 13)
        assert verdict.excluded_by_reason == {OOD: 12}
        assert verdict.reason is not None and verdict.reason.startswith("12 of 13 images were left out")


def test_fourteen_of_sixteen_cine_frames_excluded_is_indeterminate() -> None:
    """A 16-frame cine: 2 usable frames meet K = 2, but 14 left out is far more than half."""
    rows, reasons = study(2, ood=9, quality=4, failed=1)
    verdict = aggregate(rows, CLASSES, NORMAL, reasons=reasons)
    assert verdict.indeterminate
    assert (verdict.n_used, verdict.n_excluded, verdict.n_total) == (2, 14, 16)
    assert verdict.excluded_by_reason == {OOD: 9, QUALITY: 4, FAILED: 1}
    assert verdict.reason == (
        "14 of 16 images were left out (9 unlike the images the model was trained on (out of distribution), "
        "4 blank or of too poor quality, 1 could not be analysed); "
        "the model judges a study only when at most 50% of its images are left out"
    )
    # The same two frames alone (a 2-frame clip) do give a verdict.
    assert aggregate([ABNORMAL_ROW] * 2, CLASSES, NORMAL).label == "Anencephaly"


def test_left_out_rows_are_never_read() -> None:
    rows = [ABNORMAL_ROW, ABNORMAL_ROW, [float("nan")] * 5]
    verdict = aggregate(rows, CLASSES, NORMAL, reasons=[None, None, FAILED])
    assert verdict.label == "Anencephaly" and verdict.p_abnormal == pytest.approx(0.95)
    assert verdict.excluded_by_reason == {FAILED: 1}


def test_flags_and_reasons_are_not_given_together() -> None:
    with pytest.raises(ValueError, match="not both"):
        aggregate([ABNORMAL_ROW] * 2, CLASSES, NORMAL, excluded=[False, False], reasons=[None, None])
    with pytest.raises(ValueError, match="one flag per image"):
        aggregate([ABNORMAL_ROW] * 2, CLASSES, NORMAL, reasons=[None])
