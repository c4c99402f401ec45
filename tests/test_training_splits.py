from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import LeaveOneGroupOut

from app.training.splits import (
    class_weights,
    holdout_split,
    leave_one_group_out,
    leave_one_patient_out,
    patient_groups,
    patient_kfold,
    patient_labels,
)


def patients(n: int, classes: int = 5) -> dict[str, int]:
    return {f"P{i:03d}": i % classes for i in range(n)}


def test_class_weights_follow_n_over_c_times_n_c() -> None:
    labels = [0] * 6 + [1] * 3 + [2] * 1  # N = 10, C = 3
    np.testing.assert_allclose(class_weights(labels, 3), [10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])


def test_balanced_classes_get_unit_weights_and_absent_classes_zero() -> None:
    np.testing.assert_allclose(class_weights([0, 1, 0, 1], 2), [1.0, 1.0])
    np.testing.assert_allclose(class_weights([0, 0, 2, 2], 3), [4 / 6, 0.0, 4 / 6])


@pytest.mark.parametrize("folds", [2, 5])
def test_kfold_never_puts_a_patient_on_both_sides_and_covers_everyone(folds: int) -> None:
    by_patient = patients(23)
    splits = patient_kfold(by_patient, folds=folds, seed=0)
    assert len(splits) == folds
    validated: list[str] = []
    for train, val in splits:
        assert not set(train) & set(val)
        assert set(train) | set(val) == set(by_patient)
        validated += val
    assert sorted(validated) == sorted(by_patient)  # each patient validated exactly once


def test_kfold_is_stratified_when_every_class_has_enough_patients() -> None:
    splits = patient_kfold(patients(50), folds=5, seed=1)
    for _, val in splits:
        assert sorted(int(p[1:]) % 5 for p in val) == sorted([0, 1, 2, 3, 4] * 2)


def test_lopo_holds_out_each_patient_once() -> None:
    by_patient = patients(7)
    splits = leave_one_patient_out(by_patient)
    assert [val for _, val in splits] == [[p] for p in sorted(by_patient)]
    for train, val in splits:
        assert val[0] not in train and len(train) == 6


def test_holdout_split_is_patient_grouped_and_stratified() -> None:
    train, val = holdout_split(patients(40), val_fraction=0.25, seed=0)
    assert not set(train) & set(val)
    assert len(val) == 10
    assert sorted(int(p[1:]) % 5 for p in val) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_patient_with_two_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="two different labels"):
        patient_labels(["a", "a"], [0, 1])


def test_too_many_folds_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot make 5 folds from 3 patients"):
        patient_kfold(patients(3), folds=5)


def test_leave_one_group_out_holds_each_group_out_once_as_sklearn_does() -> None:
    by_patient = patients(23)
    sites = ["north", "south", "east", "west"]
    # Image-level rows as a manifest gives them: 1-3 images per patient, one site per patient.
    image_patients = [p for i, p in enumerate(sorted(by_patient)) for _ in range(1 + i % 3)]
    image_sites = [sites[int(p[1:]) * 7 % 4] for p in image_patients]
    group_of = patient_groups(image_patients, image_sites, "site")
    folds = leave_one_group_out(by_patient, group_of)

    names = sorted(by_patient)
    reference = LeaveOneGroupOut().split(names, groups=[group_of[p] for p in names])
    expected = {
        group_of[names[test[0]]]: ([names[i] for i in train], [names[i] for i in test])
        for train, test in reference
    }
    assert {group: split for group, split in folds} == expected
    assert [group for group, _ in folds] == sorted(sites)
    for group, (train, held_out) in folds:
        assert {group_of[p] for p in held_out} == {group} and group not in {group_of[p] for p in train}
        assert sorted(train + held_out) == names
    # Every patient is held out in exactly one fold, and trained on in all the others.
    for patient in names:
        assert sum(patient in held for _, (_, held) in folds) == 1
        assert sum(patient in train for _, (train, _) in folds) == len(sites) - 1


def test_group_values_must_be_present_single_and_plural() -> None:
    with pytest.raises(ValueError, match="no 'site' value"):
        patient_groups(["P1", "P2"], ["a", None], "site")
    with pytest.raises(ValueError, match="two 'site' groups"):
        patient_groups(["P1", "P1"], ["a", "b"], "site")
    with pytest.raises(ValueError, match="at least 2 groups"):
        leave_one_group_out({"P1": 0, "P2": 1}, {"P1": "a", "P2": "a"})
