from __future__ import annotations

import numpy as np
import pytest

from app.evaluation.localisation import cam_iou, cam_peak, dilate, pointing_hit


def one_peak(shape: tuple[int, int], at: tuple[int, int]) -> np.ndarray:
    cam = np.zeros(shape, np.float32)
    cam[at] = 1.0
    return cam


def test_peak_inside_the_mask_is_a_hit() -> None:
    mask = np.zeros((20, 20), bool)
    mask[4:7, 4:7] = True
    assert pointing_hit(one_peak((20, 20), (5, 5)), mask, tolerance_px=0)


def test_tolerance_dilates_the_mask_by_that_many_pixels() -> None:
    mask = np.zeros((20, 20), bool)
    mask[5, 8] = True
    cam = one_peak((20, 20), (5, 5))  # three pixels left of the lesion
    assert not pointing_hit(cam, mask, tolerance_px=2)
    assert pointing_hit(cam, mask, tolerance_px=3)


def test_an_empty_cam_points_nowhere() -> None:
    mask = np.ones((8, 8), bool)
    assert cam_peak(np.zeros((8, 8))) is None
    assert not pointing_hit(np.zeros((8, 8)), mask)


def test_a_plateau_peak_resolves_to_its_centre() -> None:
    cam = np.zeros((9, 9))
    cam[2:5, 4:7] = 1.0
    assert cam_peak(cam) == (3, 5)


def test_iou_hand_worked_overlap() -> None:
    cam = np.full((10, 10), 0.1)
    cam[0:4, 0:4] = 1.0  # above half max: 16 pixels
    mask = np.zeros((10, 10), bool)
    mask[2:6, 2:6] = True  # 16 pixels, 4 shared
    assert cam_iou(cam, mask) == pytest.approx(4 / 28)


def test_iou_is_one_when_the_hot_area_is_the_lesion() -> None:
    cam = np.full((10, 10), 0.4)
    cam[3:6, 3:6] = 0.9
    mask = cam > 0.5
    assert cam_iou(cam, mask) == 1.0


def test_mismatched_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        pointing_hit(np.zeros((4, 4)), np.zeros((5, 5), bool))


def test_dilate_grows_a_point_into_a_disc() -> None:
    mask = np.zeros((11, 11), bool)
    mask[5, 5] = True
    grown = dilate(mask, 2)
    assert grown[5, 3] and grown[3, 5] and not grown[5, 2]
