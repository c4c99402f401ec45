"""Rendered phantoms: every class draws, and lesion masks lie on the anatomy they describe."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from synth_support import near, polygon_mask, render

from app.preprocess import find_scan_area
from app.synth.geometry import sector_maps
from app.synth.scene import cine_views

CASES = [
    ("normal", "transventricular"),
    ("normal", "transthalamic"),
    ("normal", "transcerebellar"),
    ("normal", "coronal"),
    ("normal", "sagittal_spine"),
    ("Anencephaly", "transthalamic"),
    ("Anencephaly", "coronal"),
    ("Encephalocele_meningocele", "transcerebellar"),
    ("Holoprosencephaly", "transventricular"),
    ("Holoprosencephaly", "coronal"),
    ("Rachischisis", "transcerebellar"),
    ("Rachischisis", "sagittal_spine"),
]


@pytest.mark.parametrize(("diagnosis", "plane"), CASES)
def test_image_is_a_grey_sector_on_black_and_the_mask_fits_the_class(diagnosis: str, plane: str) -> None:
    image = render(diagnosis, plane, seed=1)
    maps = sector_maps(image.sector)
    assert image.pixels.shape == (480, 640) and image.pixels.dtype == np.uint8
    assert image.mask.shape == image.pixels.shape
    assert set(np.unique(image.mask)) <= {0, 255}
    inside = image.pixels[maps.mask]
    assert inside.min() >= 12, "scan-area detection needs the sector brighter than its threshold"
    assert inside.std() > 10, "speckle and anatomy must vary"
    lesion = image.mask > 0
    if diagnosis == "normal":
        assert not lesion.any()
    else:
        assert not (lesion & ~maps.mask).any()
        fraction = lesion.sum() / maps.mask.sum()
        assert 0.004 < fraction < 0.2, f"lesion covers {fraction:.3f} of the sector"


def test_annotations_stay_clear_of_the_sector_and_scan_area_is_found() -> None:
    image = render("normal", "transthalamic", seed=2)
    maps = sector_maps(image.sector)
    distance = cv2.distanceTransform((~maps.mask).astype(np.uint8), cv2.DIST_L2, 5)
    outside_marks = (image.pixels > 0) & ~maps.mask
    assert outside_marks.sum() > 200, "burned-in text and ruler are drawn"
    assert distance[outside_marks].min() >= 6
    assert image.pixels[~maps.mask & (distance < 6)].max() == 0
    top, bottom, left, right = find_scan_area(image.pixels)
    box_top, box_bottom, box_left, box_right = maps.box
    assert abs(top - box_top) <= 5 and abs(bottom - box_bottom) <= 5
    assert abs(left - box_left) <= 5 and abs(right - box_right) <= 5


def test_encephalocele_mask_covers_the_calvarial_defect_and_a_sac_outside_the_skull() -> None:
    image = render("Encephalocele_meningocele", "transthalamic", seed=3)
    geometry = image.geometry
    assert geometry.skull_contour is not None and geometry.skull_present is not None
    gap = geometry.skull_contour[~geometry.skull_present]
    intact = geometry.skull_contour[geometry.skull_present]
    assert 0 < len(gap) < 0.3 * len(geometry.skull_contour)
    lesion = image.mask > 0
    assert near(lesion, gap, 2.0).all(), "every point of the defect lies in the mask"
    assert near(lesion, intact, 2.0).mean() < 0.35, "the intact vault is mostly outside the mask"
    outside_skull = lesion & ~polygon_mask(geometry.skull_contour, lesion.shape)
    assert outside_skull.sum() > 0.4 * lesion.sum(), "the herniated sac lies outside the calvarium"


def test_anencephaly_has_no_vault_and_the_mask_is_where_it_should_be() -> None:
    image = render("Anencephaly", "transthalamic", seed=4)
    geometry = image.geometry
    assert geometry.skull_present is not None and not geometry.skull_present.any()
    expected_head = polygon_mask(geometry.skull_contour, image.mask.shape)
    lesion = image.mask > 0
    assert (lesion & expected_head).sum() > 0.7 * lesion.sum()
    assert lesion.sum() < 0.8 * expected_head.sum()


def test_holoprosencephaly_mask_is_inside_an_intact_skull() -> None:
    image = render("Holoprosencephaly", "transthalamic", seed=5)
    geometry = image.geometry
    assert geometry.skull_present is not None and geometry.skull_present.all()
    head = polygon_mask(geometry.skull_contour, image.mask.shape)
    lesion = image.mask > 0
    assert (lesion & head).sum() > 0.95 * lesion.sum()
    assert 0.1 < lesion.sum() / head.sum() < 0.7


def test_lemon_sign_mask_touches_the_frontal_skull_only() -> None:
    image = render("Rachischisis", "transventricular", seed=6, lemon=True)
    geometry = image.geometry
    assert geometry.skull_contour is not None
    touched = near(image.mask > 0, geometry.skull_contour, 1.0)
    n = len(touched)
    t = np.arange(n) * 2 * np.pi / n  # contour parameter: 0 at the forehead, π at the occiput
    frontal = np.abs((t + np.pi) % (2 * np.pi) - np.pi) < np.pi / 2
    assert touched[frontal].mean() > 0.4
    assert touched[~frontal].mean() < 0.1


def test_ventriculomegaly_of_chiari_ii_is_marked_inside_the_skull() -> None:
    # The dilated lateral ventricles are drawn for Rachischisis, so they must be in the mask too:
    # an unmarked sign would count a heatmap that points at it as a miss.
    image = render("Rachischisis", "transventricular", seed=6, lemon=True, ventriculomegaly=True)
    geometry = image.geometry
    assert geometry.skull_contour is not None
    count, labels = cv2.connectedComponents((image.mask > 0).astype(np.uint8))
    regions = [labels == k for k in range(1, count)]
    inner = [region for region in regions if not near(region, geometry.skull_contour, 3.0).any()]
    assert len(regions) == 4, "two lemon-sign dents and two dilated ventricles"
    assert len(inner) == 2
    skull = polygon_mask(geometry.skull_contour, image.mask.shape)
    assert all((region & skull).sum() == region.sum() for region in inner)
    # Normal ventricles are not a lesion.
    assert not render("normal", "transventricular", seed=6).mask.any()


def test_open_spine_mask_sits_on_the_spine_and_breaks_the_posterior_line() -> None:
    image = render("Rachischisis", "sagittal_spine", seed=7)
    geometry = image.geometry
    assert geometry.spine_line is not None and geometry.posterior_line is not None
    lesion = image.mask > 0
    on_canal = near(lesion, geometry.spine_line, 1.0)
    on_arches = near(lesion, geometry.posterior_line, 1.0)
    assert 0.05 < on_canal.mean() < 0.4, "a segment of the canal, not the whole spine"
    assert on_arches.any()
    ys, xs = np.nonzero(lesion)
    centroid = np.array([xs.mean(), ys.mean()])
    spine_length = np.hypot(*np.diff(geometry.spine_line, axis=0).T).sum()
    assert np.hypot(*(geometry.spine_line - centroid).T).min() < 0.2 * spine_length


def test_same_view_seed_gives_identical_pixels_and_different_seeds_differ() -> None:
    a = render("normal", "coronal", seed=8)
    b = render("normal", "coronal", seed=8)
    c = render("normal", "coronal", seed=9)
    assert np.array_equal(a.pixels, b.pixels)
    assert not np.array_equal(a.pixels, c.pixels)


def test_cine_probe_motion_is_slight_but_real() -> None:
    view = render("normal", "transthalamic", seed=10).view
    frames = cine_views(view, 16, np.random.default_rng(0))
    shifts = np.array([[f.frame.cx - view.frame.cx, f.frame.cy - view.frame.cy] for f in frames])
    turns = np.array([f.frame.angle - view.frame.angle for f in frames])
    assert np.hypot(*shifts.T).max() < 15 and np.abs(turns).max() < np.radians(5)
    assert np.hypot(*shifts.T).max() > 0.5
    assert len({(f.frame.cx, f.frame.cy) for f in frames}) == 16
