"""Per-image probabilities → one patient verdict. Pure functions of numbers only.

"mean" averages the softmax vectors of the usable images (the paper's patient-level rule);
"vote" takes each image's top class, breaks ties by the higher mean probability and then
by the model card's class order. Flagged images (out of distribution, blank) are left out
and counted; when nothing is left the verdict is "indeterminate", with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from app.modelcard import AGGREGATIONS

INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class Verdict:
    """The patient-level suggestion.

    ``probabilities`` are the mean class probabilities of the images used (under both
    rules), ``p_abnormal`` = 1 − P(normal) from them; ``votes`` is set for "vote".
    ``support`` lists used image indices, the one most in favour of ``label`` first.
    An indeterminate verdict has empty probabilities, ``p_abnormal`` None and a ``reason``.
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

    @property
    def indeterminate(self) -> bool:
        return self.label == INDETERMINATE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _indeterminate(method: str, n_excluded: int, reason: str) -> Verdict:
    return Verdict(
        label=INDETERMINATE,
        probabilities={},
        p_abnormal=None,
        aggregation=method,
        support=[],
        n_used=0,
        n_excluded=n_excluded,
        reason=reason,
    )


def vote_winner(top_classes: np.ndarray, mean_probabilities: np.ndarray) -> tuple[int, np.ndarray]:
    """Most-voted class; ties → higher mean probability → lower class index. Returns (class, counts)."""
    counts = np.bincount(top_classes, minlength=len(mean_probabilities))
    tied = np.flatnonzero(counts == counts.max())
    # Sorting by (-mean probability, index) makes the tie-break explicit and deterministic.
    winner = min(tied, key=lambda c: (-float(mean_probabilities[c]), int(c)))
    return int(winner), counts


def aggregate(
    probabilities: np.ndarray | Sequence[Sequence[float]],
    classes: Sequence[str],
    normal_class: str,
    method: str = "mean",
    excluded: Sequence[bool] | None = None,
) -> Verdict:
    """Combine an N×C matrix of per-image probabilities into a Verdict."""
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)}")
    matrix = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(classes))
    n_images = matrix.shape[0]
    flags = np.zeros(n_images, bool) if excluded is None else np.asarray(excluded, bool)
    if flags.shape != (n_images,):
        raise ValueError("'excluded' must have one flag per image")
    if n_images == 0:
        return _indeterminate(method, 0, "no images to assess")
    used = np.flatnonzero(~flags)
    n_excluded = int(flags.sum())
    if used.size == 0:
        return _indeterminate(
            method,
            n_excluded,
            f"all {n_images} image(s) were flagged as unusable (blank, or unlike the training images)",
        )
    mean = matrix[used].mean(axis=0)
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
        n_excluded=n_excluded,
        votes=votes,
    )
