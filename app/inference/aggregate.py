"""Per-image probabilities → one patient verdict. Pure functions of numbers only.

"mean" averages the softmax vectors of the usable images (the paper's patient-level rule);
"vote" takes each image's top class, breaks ties by the higher mean probability and then
by the model card's class order. "geomean" multiplies the images' probabilities (the
renormalised geometric mean): with balanced class weights in training it is the posterior of
images taken as independent evidence, so one image that rules a class out counts. That is
what a study needs when a lesion shows only in some of its planes and every other image looks
normal: the mean lets those images outvote the one that shows the lesion. Flagged images
(out of distribution, blank) and images that could not be analysed are left out and counted
by reason.

The gate (the card's ``VerdictRule``): a verdict needs at least ``min_usable_images`` usable
images, and no more than ``max_excluded_fraction`` of the study left out. Otherwise the
verdict is "indeterminate", with a reason a radiologist can read and the counts, because a
confident answer from the one image that survived a folder of holiday photos is not an answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from app.modelcard import AGGREGATIONS, VerdictRule

INDETERMINATE = "indeterminate"

# Why an image was left out (the keys of Verdict.excluded_by_reason), in reporting order.
NOT_ULTRASOUND = "not_ultrasound"  # another modality, or a colour picture (app.inference.image_kind)
OOD = "ood"
VIEW = "view"  # flagged by the view-scope signal: a non-CNS fetal view (abdomen, femur, heart, face)
QUALITY = "quality"
LOSSY = "lossy"  # lossily compressed, and the model card's input_policy excludes such images
FAILED = "failed"
FLAGGED = "flagged"  # excluded without a stated reason (a bare boolean flag)
EXCLUSION_WORDS: dict[str, str] = {
    NOT_ULTRASOUND: "not ultrasound (another modality or a colour picture)",
    OOD: "unlike the images the model was trained on (out of distribution)",
    VIEW: "an ultrasound view this model was not trained on",
    QUALITY: "blank or of too poor quality",
    LOSSY: "lossily compressed (the model card leaves them out)",
    FAILED: "could not be analysed",
    FLAGGED: "flagged as unusable",
}


@dataclass(frozen=True)
class Verdict:
    """The patient-level suggestion.

    ``probabilities`` are the mean class probabilities of the images used ("mean" and
    "vote"), or their renormalised geometric mean ("geomean"); ``p_abnormal`` = 1 − P(normal)
    from them; ``votes`` is set for "vote".
    ``support`` lists used image indices, the one most in favour of ``label`` first.
    An indeterminate verdict has empty probabilities, ``p_abnormal`` None and a ``reason``.
    Counts: ``n_used`` + ``n_excluded`` = ``n_total``; ``excluded_by_reason`` splits
    ``n_excluded`` by reason key (``NOT_ULTRASOUND``, ``OOD``, ``VIEW``, ``QUALITY``, ``FAILED``).
    """

    label: str
    probabilities: dict[str, float]
    p_abnormal: float | None
    aggregation: str
    support: list[int]
    n_used: int
    n_excluded: int
    reason: str | None = None
    votes: dict[str, int] | None = None
    n_total: int = 0
    excluded_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def indeterminate(self) -> bool:
        return self.label == INDETERMINATE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_exclusions(excluded_by_reason: Mapping[str, int]) -> str:
    """ "12 unlike the images the model was trained on (out of distribution), 1 could not be analysed"."""
    order = [*EXCLUSION_WORDS, *sorted(set(excluded_by_reason) - set(EXCLUSION_WORDS))]
    parts = [
        f"{excluded_by_reason[key]} {EXCLUSION_WORDS.get(key, key)}"
        for key in order
        if excluded_by_reason.get(key)
    ]
    return ", ".join(parts)


def gate_reason(
    n_used: int, n_total: int, excluded_by_reason: Mapping[str, int], rule: VerdictRule
) -> str | None:
    """Why these counts may not give a verdict under ``rule``; None when they may."""
    n_excluded = n_total - n_used
    left_out = describe_exclusions(excluded_by_reason)
    if n_total == 0:
        return "no images to assess"
    if n_used == 0:
        return f"all {n_total} image(s) were left out: {left_out}"
    # The tolerance lets exactly the limit pass (e.g. 57 of 100 at 0.57) despite float rounding.
    if n_excluded > rule.max_excluded_fraction * n_total + 1e-9:
        return (
            f"{n_excluded} of {n_total} images were left out ({left_out}); the model judges a study "
            f"only when at most {rule.max_excluded_fraction:.0%} of its images are left out"
        )
    if n_used < rule.min_usable_images:
        detail = f" ({left_out} left out)" if left_out else ""
        return (
            f"only {n_used} of {n_total} image(s) could be used{detail}; a patient verdict needs "
            f"at least {rule.min_usable_images} usable images"
        )
    return None


def _indeterminate(method: str, n_total: int, excluded_by_reason: dict[str, int], reason: str) -> Verdict:
    n_excluded = sum(excluded_by_reason.values())
    return Verdict(
        label=INDETERMINATE,
        probabilities={},
        p_abnormal=None,
        aggregation=method,
        support=[],
        n_used=n_total - n_excluded,
        n_excluded=n_excluded,
        reason=reason,
        n_total=n_total,
        excluded_by_reason=excluded_by_reason,
    )


def _reasons(
    n_images: int, excluded: Sequence[bool] | None, reasons: Sequence[str | None] | None
) -> list[str | None]:
    """One reason key per image (None: usable), from either way of saying it."""
    if excluded is not None and reasons is not None:
        raise ValueError("give 'excluded' or 'reasons', not both")
    if reasons is not None:
        result = [r or None for r in reasons]
    else:
        flags = np.zeros(n_images, bool) if excluded is None else np.asarray(excluded, bool).reshape(-1)
        result = [FLAGGED if flag else None for flag in flags]
    if len(result) != n_images:
        raise ValueError("'excluded' must have one flag per image")
    return result


# Probabilities are clipped here before the logarithm: a softmax can underflow to 0 in float32.
PROBABILITY_FLOOR = 1e-12


def geometric_mean_probabilities(matrix: np.ndarray) -> np.ndarray:
    """Row-wise product of an N×C probability matrix, renormalised to sum to 1 (N ≥ 1).

    Equal to the normalised geometric mean of the rows; computed in log space so that many
    images cannot underflow it.
    """
    logs = np.log(np.clip(np.asarray(matrix, dtype=np.float64), PROBABILITY_FLOOR, 1.0)).mean(axis=0)
    weights = np.exp(logs - logs.max())
    return weights / weights.sum()


def vote_winner(top_classes: np.ndarray, mean_probabilities: np.ndarray) -> tuple[int, np.ndarray]:
    """Most-voted class; ties → higher mean probability → lower class index. Returns (class, counts)."""
    counts = np.bincount(top_classes, minlength=len(mean_probabilities))
    tied = np.flatnonzero(counts == counts.max())
    # Sorting by (-mean probability, index) makes the tie-break explicit and deterministic.
    winner = min(tied, key=lambda c: (-float(mean_probabilities[c]), int(c)))
    return int(winner), counts


def _group_reason(member_reasons: Sequence[str | None], rule: VerdictRule) -> str | None:
    """A loop is left out, with its left-out frames' most common reason, when more than the
    rule's ``max_excluded_fraction`` of its frames are (the study's gate, applied within the
    loop: a clip of mostly flagged frames is not trusted for the few that slipped through)."""
    left_out = [r for r in member_reasons if r is not None]
    if not left_out or (
        len(left_out) <= rule.max_excluded_fraction * len(member_reasons) + 1e-9 and None in member_reasons
    ):
        return None
    counts = Counter(left_out)
    order = list(EXCLUSION_WORDS)
    return min(counts, key=lambda r: (-counts[r], order.index(r) if r in order else len(order), str(r)))


def _aggregate_groups(
    matrix: np.ndarray,
    classes: Sequence[str],
    normal_class: str,
    method: str,
    per_image: list[str | None],
    groups: Sequence[Hashable | None],
    rule: VerdictRule | None,
) -> Verdict:
    """One row per group (a cine loop: the mean of its usable frames), each still its own group."""
    if len(groups) != matrix.shape[0]:
        raise ValueError("'groups' must have one entry per image")
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(groups):
        members.setdefault(("still", i) if key is None else ("group", key), []).append(i)
    items = list(members.values())
    gate = rule or VerdictRule()
    item_reasons = [_group_reason([per_image[i] for i in item], gate) for item in items]
    rows = np.full((len(items), len(classes)), np.nan)
    for k, item in enumerate(items):
        usable = [i for i in item if per_image[i] is None]
        if usable and item_reasons[k] is None:
            rows[k] = matrix[usable].mean(axis=0)
    verdict = aggregate(rows, classes, normal_class, method, reasons=item_reasons, rule=rule)
    if verdict.indeterminate:
        return verdict
    winner = list(classes).index(verdict.label)
    support = [
        i
        for k in verdict.support
        for i in sorted(
            (i for i in items[k] if per_image[i] is None), key=lambda i: (-float(matrix[i, winner]), i)
        )
    ]
    return replace(verdict, support=support)


def aggregate(
    probabilities: np.ndarray | Sequence[Sequence[float]],
    classes: Sequence[str],
    normal_class: str,
    method: str = "mean",
    excluded: Sequence[bool] | None = None,
    *,
    reasons: Sequence[str | None] | None = None,
    rule: VerdictRule | None = None,
    groups: Sequence[Hashable | None] | None = None,
) -> Verdict:
    """Combine an N×C matrix of per-image probabilities into a Verdict.

    Left-out images are given either as ``excluded`` flags or as ``reasons`` (a reason key
    per image, None for a usable one); their rows are never read, so a failed image may
    carry NaNs. ``rule``: the card's gate, default ``VerdictRule()``.

    ``groups``: one key per image, None for a still; images sharing a key are the frames of
    one cine loop and count as one image of the study (the card's ``cine.loop_weight``
    "one_image"): the loop's row is the mean of its usable frames' probabilities; the loop is
    left out (with its left-out frames' most common reason) when more than the rule's
    ``max_excluded_fraction`` of its frames are; the counts and the gate are in images, a loop
    being one. ``support`` still lists frame positions:
    the loops and stills in order of support, each loop's usable frames most supportive first.
    """
    if groups is not None and any(key is not None for key in groups):
        matrix = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(classes))
        per_image = _reasons(matrix.shape[0], excluded, reasons)
        return _aggregate_groups(matrix, classes, normal_class, method, per_image, groups, rule)
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)}")
    matrix = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(classes))
    n_images = matrix.shape[0]
    per_image = _reasons(n_images, excluded, reasons)
    excluded_by_reason = dict(Counter(r for r in per_image if r is not None))
    used = np.array([i for i, r in enumerate(per_image) if r is None], dtype=int)
    refusal = gate_reason(int(used.size), n_images, excluded_by_reason, rule or VerdictRule())
    if refusal is not None:
        return _indeterminate(method, n_images, excluded_by_reason, refusal)
    mean = geometric_mean_probabilities(matrix[used]) if method == "geomean" else matrix[used].mean(axis=0)
    votes: dict[str, int] | None = None
    if method == "vote":
        winner, counts = vote_winner(matrix[used].argmax(axis=1), mean)
        votes = {name: int(count) for name, count in zip(classes, counts, strict=True)}
    else:
        winner = int(np.argmax(mean))
    normal_index = list(classes).index(normal_class)
    order = sorted(used.tolist(), key=lambda i: (-float(matrix[i, winner]), i))
    return Verdict(
        label=classes[winner],
        probabilities={name: float(p) for name, p in zip(classes, mean, strict=True)},
        p_abnormal=float(1.0 - mean[normal_index]),
        aggregation=method,
        support=order,
        n_used=int(used.size),
        n_excluded=n_images - int(used.size),
        votes=votes,
        n_total=n_images,
        excluded_by_reason=excluded_by_reason,
    )
