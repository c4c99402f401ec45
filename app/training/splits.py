"""Patient-grouped data splits and the paper's class weights.

Images of one patient are strongly correlated, so every split is made over patients: no patient
ever has images on both sides of a split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

# A split: (training patients, validation patients), each sorted.
Split = tuple[list[str], list[str]]


def class_weights(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """weight_c = N / (C * n_c) (Qi et al.); a class absent from `labels` gets weight 0."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    total = counts.sum()
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, total / (num_classes * counts), 0.0)
    return weights


def patient_labels(patients: Sequence[str], labels: Sequence[int]) -> dict[str, int]:
    """One label per patient, from per-image (patient, label) pairs."""
    result: dict[str, int] = {}
    for patient, label in zip(patients, labels, strict=True):
        if result.setdefault(patient, label) != label:
            raise ValueError(f"a patient has images with two different labels ({result[patient]}, {label})")
    return result


def _smallest_class(labels: Sequence[int]) -> int:
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return int(counts[counts > 0].min())


def patient_kfold(by_patient: dict[str, int], folds: int = 5, seed: int = 0) -> list[Split]:
    """K folds over patients, stratified by class when every class has at least `folds` patients."""
    patients = np.array(sorted(by_patient))
    if folds < 2 or folds > len(patients):
        raise ValueError(f"cannot make {folds} folds from {len(patients)} patients")
    labels = np.array([by_patient[p] for p in patients])
    splitter: StratifiedKFold | KFold
    if _smallest_class(labels) >= folds:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [
        (sorted(patients[train].tolist()), sorted(patients[val].tolist()))
        for train, val in splitter.split(patients, labels)
    ]


def leave_one_patient_out(by_patient: dict[str, int]) -> list[Split]:
    patients = sorted(by_patient)
    return [([p for p in patients if p != held_out], [held_out]) for held_out in patients]


def holdout_split(by_patient: dict[str, int], val_fraction: float = 0.15, seed: int = 0) -> Split:
    """One patient-grouped train/validation split, stratified when possible (for a final fit)."""
    patients = sorted(by_patient)
    labels = [by_patient[p] for p in patients]
    n_val = max(1, round(val_fraction * len(patients)))
    if len(patients) < 2:
        raise ValueError("a validation split needs at least two patients")
    stratifiable = _smallest_class(labels) >= 2 and n_val >= len(set(labels))
    stratify = labels if stratifiable else None
    train, val = train_test_split(patients, test_size=n_val, random_state=seed, stratify=stratify)
    return sorted(train), sorted(val)


# A group-held-out fold: (group value, (training patients, held-out patients)).
GroupSplit = tuple[str, Split]


def patient_groups(patients: Sequence[str], values: Sequence[str | None], column: str) -> dict[str, str]:
    """One group value per patient from per-image (patient, value) pairs, e.g. the manifest's site.

    A patient without a value, or with two, cannot be held out as a whole, so both are refused.
    """
    result: dict[str, str] = {}
    for patient, value in zip(patients, values, strict=True):
        if not value:
            raise ValueError(f"an image of patient {patient!r} has no {column!r} value in manifest.csv")
        if result.setdefault(patient, value) != value:
            raise ValueError(
                f"patient {patient!r} has images in two {column!r} groups ({result[patient]}, {value})"
            )
    return result


def leave_one_group_out(by_patient: dict[str, int], group_of: dict[str, str]) -> list[GroupSplit]:
    """One fold per distinct group (sorted): train on every other group, hold this one out.

    Held out by site, a fold measures how the recipe carries to a centre it never saw, which
    patient-level folds over pooled sites cannot (a site's scanner and population leak across).
    """
    patients = sorted(by_patient)
    missing = [p for p in patients if p not in group_of]
    if missing:
        raise ValueError(f"{len(missing)} patient(s) have no group, e.g. {missing[0]!r}")
    groups = sorted({group_of[p] for p in patients})
    if len(groups) < 2:
        raise ValueError(f"leave-one-group-out needs at least 2 groups, found {len(groups)}: {groups}")
    return [
        (
            group,
            ([p for p in patients if group_of[p] != group], [p for p in patients if group_of[p] == group]),
        )
        for group in groups
    ]
