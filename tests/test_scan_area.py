"""Scan-area detection (app.preprocess.find_scan_area) under brightness, colour, blur, compression and
geometry changes, and on real vendor ultrasound layouts.

References are independent of the function under test: the former fixed-threshold detector (frozen
below, as released up to f3e0e37) on the standard phantoms, the renderer's own sector geometry for
rotated and narrowed sectors, and the DICOM Sequence of Ultrasound Regions on vendor files.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage
from synth_support import render
from training_support import tiny_synth_dir

from app.evaluation import perturb
from app.ingest import IngestOptions, ingest_paths
from app.preprocess import Box, find_scan_area
from app.synth.geometry import sector_maps
from app.training.data import discover_samples, read_rgb
from tests.ingest_support import vendor_file

__all__ = ["tiny_synth_dir"]

PHANTOMS = [
    ("normal", "transthalamic", 1),
    ("normal", "sagittal_spine", 2),
    ("Anencephaly", "coronal", 3),
    ("Encephalocele_meningocele", "transcerebellar", 4),
    ("Holoprosencephaly", "transventricular", 5),
    ("Rachischisis", "sagittal_spine", 6),
]


def legacy_find_scan_area(image: np.ndarray, threshold: int = 12, min_fraction: float = 0.05) -> Box:
    """The detector the bundled model was trained with: a fixed grey threshold (frozen copy)."""
    grey = image.max(axis=2) if image.ndim == 3 else image
    h, w = grey.shape
    mask = (grey > threshold).astype(np.uint8)
    k = max(3, (min(h, w) // 60) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((k * 3, k * 3), np.uint8))
    count, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return (0, h, 0, w)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < min_fraction * h * w:
        return (0, h, 0, w)
    x, y, bw, bh = (int(v) for v in stats[best, :4])
    return (y, y + bh, x, x + bw)


def iou(a: Box, b: Box) -> float:
    top, bottom = max(a[0], b[0]), min(a[1], b[1])
    left, right = max(a[2], b[2]), min(a[3], b[3])
    inter = max(0, bottom - top) * max(0, right - left)
    area_a = (a[1] - a[0]) * (a[3] - a[2])
    area_b = (b[1] - b[0]) * (b[3] - b[2])
    return inter / float(area_a + area_b - inter)


def bounding_box(mask: np.ndarray) -> Box:
    rows, cols = np.nonzero(mask)
    return (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)


@functools.cache
def phantom(diagnosis: str, plane: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB display image, boolean sector mask from the renderer's geometry)."""
    image = render(diagnosis, plane, seed=seed)
    rgb = np.repeat(image.pixels[:, :, None], 3, axis=2)
    rgb.setflags(write=False)
    return rgb, sector_maps(image.sector).mask


@pytest.mark.parametrize(("diagnosis", "plane", "seed"), PHANTOMS)
def test_standard_phantoms_get_the_same_box_as_the_fixed_threshold(
    diagnosis: str, plane: str, seed: int
) -> None:
    """The bundled model was trained on legacy crops: serving it must not shift them."""
    image, sector = phantom(diagnosis, plane, seed)
    new, old = find_scan_area(image), legacy_find_scan_area(image)
    assert max(abs(a - b) for a, b in zip(new, old, strict=True)) <= 2, (new, old)
    assert iou(new, bounding_box(sector)) >= 0.97


def test_written_data_sets_get_the_same_boxes_as_the_fixed_threshold(tiny_synth_dir: Path) -> None:
    """Every PNG of a `fetalcns synth` data set, as training and evaluation read it."""
    samples = discover_samples(tiny_synth_dir)
    assert len(samples) == 20
    for sample in samples:
        image = read_rgb(sample.path)
        assert find_scan_area(image) == legacy_find_scan_area(image), sample.path.name


CHANGES = {
    "gain 0.7": lambda im: perturb.gain(im, 0.7),
    "gain 1.3": lambda im: perturb.gain(im, 1.3),
    "gamma 0.7": lambda im: perturb.gamma(im, 0.7),
    "gamma 1.5": lambda im: perturb.gamma(im, 1.5),
    "amber tint": lambda im: perturb.tint(im, (1.0, 0.8, 0.5)),
    "blue tint": lambda im: perturb.tint(im, (0.55, 0.75, 1.0)),
    "low contrast": lambda im: perturb.contrast(im, 0.5),
    "low contrast and dark": lambda im: perturb.contrast(perturb.gain(im, 0.6), 0.6, centre=100.0),
    "blur": lambda im: perturb.blur(im, 2.0),
    "jpeg 30": lambda im: perturb.jpeg(im, 30),
    "noise": lambda im: np.clip(im + np.random.default_rng(0).normal(0, 3, im.shape), 0, 255).astype(
        np.uint8
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_box_survives_photometric_changes(change: str) -> None:
    for diagnosis, plane, seed in PHANTOMS[:4]:
        image, _sector = phantom(diagnosis, plane, seed)
        reference = find_scan_area(image)
        changed = find_scan_area(CHANGES[change](image))
        assert iou(changed, reference) >= 0.9, (diagnosis, plane, changed, reference)


def test_the_fixed_threshold_failed_on_darker_frames() -> None:
    """Why the detector changed: at gain × 0.7 the phantoms' fluid falls under grey 12."""
    ious = []
    for diagnosis, plane, seed in PHANTOMS:
        image, _sector = phantom(diagnosis, plane, seed)
        ious.append(iou(legacy_find_scan_area(perturb.gain(image, 0.7)), legacy_find_scan_area(image)))
    assert min(ious) < 0.9


@pytest.mark.parametrize("degrees", [15.0, -15.0])
def test_box_follows_a_rotation(degrees: float) -> None:
    for diagnosis, plane, seed in PHANTOMS[:3]:
        image, sector = phantom(diagnosis, plane, seed)
        # Expected: the bounding box of the renderer's sector rotated by scipy (nearest neighbour).
        rotated_sector = ndimage.rotate(sector.astype(np.uint8), degrees, reshape=False, order=0) > 0
        found = find_scan_area(perturb.rotate(image, degrees))
        assert iou(found, bounding_box(rotated_sector)) >= 0.9, (found, bounding_box(rotated_sector))


def test_box_follows_a_mirror() -> None:
    for diagnosis, plane, seed in PHANTOMS[:3]:
        image, _sector = phantom(diagnosis, plane, seed)
        top, bottom, left, right = find_scan_area(image)
        width = image.shape[1]
        mirrored = (top, bottom, width - right, width - left)
        assert iou(find_scan_area(perturb.flip(image)), mirrored) >= 0.97


@pytest.mark.parametrize("half_angle", [22.0, 15.0])
def test_box_shrinks_with_a_narrower_sector(half_angle: float) -> None:
    for diagnosis, plane, seed in PHANTOMS[:3]:
        image, sector = phantom(diagnosis, plane, seed)
        image_geometry = render(diagnosis, plane, seed=seed).sector
        apex = (image_geometry.apex_x, image_geometry.apex_y)
        narrowed = perturb.narrow_sector(image, half_angle, apex)
        # Expected: the renderer's sector intersected with the narrower fan, computed by dot product.
        h, w = sector.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        dx, dy = xs - apex[0], ys - apex[1]
        inside = dy / np.hypot(dx, dy) >= np.cos(np.radians(half_angle))
        expected = bounding_box(sector & inside)
        assert iou(find_scan_area(narrowed), expected) >= 0.9, (find_scan_area(narrowed), expected)


def test_blank_and_tiny_frames_fall_back_to_the_whole_image() -> None:
    assert find_scan_area(np.zeros((50, 70), np.uint8)) == (0, 50, 0, 70)
    assert find_scan_area(np.full((40, 30, 3), 90, np.uint8)) == (0, 40, 0, 30)
    assert find_scan_area(np.zeros((3, 2, 3), np.uint8)) == (0, 3, 0, 2)


def test_detection_is_pure() -> None:
    image, _sector = phantom(*PHANTOMS[0])
    before = image.copy()
    assert find_scan_area(image) == find_scan_area(image.copy())
    np.testing.assert_array_equal(image, before)


# Every ultrasound file among pydicom's and pydicom-data's test files (Modality US): name → what a
# look at the image shows must be inside the box, as (top, bottom, left, right) by eye, or None.
VENDOR_US = {
    "US1_UNCR.dcm": (120, 330, 30, 610),  # linear probe, colour Doppler; header text above, label below
    "US1_J2KI.dcm": (120, 330, 30, 610),
    "examples_jpeg2k.dcm": (120, 330, 30, 610),
    "examples_rgb_color.dcm": (15, 165, 10, 310),
    "OBXXXX1A.dcm": (70, 140, 330, 600),  # Philips: small sector under a header bar
    "examples_palette.dcm": (70, 140, 330, 600),
    "examples_ybr_color.dcm": (25, 195, 100, 225),  # echo sector, YBR_FULL_422 JPEG cine
    "color3d_jpeg_baseline.dcm": (60, 395, 180, 450),
    "JPGLosslessP14SV1_1s_1f_8b.dcm": (175, 640, 160, 880),  # sector with calipers
    "gdcm-US-ALOKA-16.dcm": (30, 410, 35, 600),  # dual display
    "color-pl.dcm": (5, 115, 20, 236),  # sector filling the frame
    "color-px.dcm": (5, 115, 20, 236),
    "ExplVR_BigEnd.dcm": None,  # 60×80 crop of a colour image
}


TOOLBAR_TOP = {"examples_ybr_color.dcm": 225}


@functools.cache
def vendor_image(name: str) -> tuple[np.ndarray, Box | None]:
    result = ingest_paths([vendor_file(name)], IngestOptions(max_frames_per_cine=1))
    assert not result.rejected, result.rejected
    image = result.studies[0].images[0]
    return image.pixels, image.scan_box


def content_mask(image: np.ndarray) -> np.ndarray:
    """Pixels with clear echoes or colour: the brightest channel over grey 40 after a 5×5 median,
    without strokes under 5 px (text, calipers)."""
    grey = cv2.medianBlur(image.max(axis=2), 5)
    mask = (grey > 40).astype(np.uint8)
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)) > 0


@pytest.mark.parametrize("name", list(VENDOR_US))
def test_vendor_ultrasound_box_covers_the_image_content(name: str) -> None:
    image, region = vendor_image(name)
    h, w = image.shape[:2]
    top, bottom, left, right = box = find_scan_area(image)
    assert 0 <= top < bottom <= h and 0 <= left < right <= w
    assert bottom - top >= 0.2 * h and right - left >= 0.2 * w, box  # not degenerate
    expected = VENDOR_US[name]
    if expected is not None:
        e_top, e_bottom, e_left, e_right = expected
        assert top <= e_top and bottom >= e_bottom and left <= e_left and right >= e_right, (box, expected)
    content = content_mask(image)
    if region is not None:
        # The scanner's own tissue region: the content inside it must be inside the box.
        r_top, r_bottom, r_left, r_right = region
        # This GE layout's region runs over the toolbar at the frame's foot (grey buttons, rows 226+).
        r_bottom = min(r_bottom, TOOLBAR_TOP.get(name, h))
        inside_region = np.zeros_like(content)
        inside_region[r_top:r_bottom, r_left:r_right] = True
        content &= inside_region
    inside_box = np.zeros_like(content)
    inside_box[top:bottom, left:right] = True
    assert content.any()
    recall = (content & inside_box).sum() / content.sum()
    assert recall >= 0.9, f"the box holds {recall:.2f} of the content"


@pytest.mark.parametrize(
    "name", ["US1_UNCR.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "color3d_jpeg_baseline.dcm"]
)
def test_vendor_box_leaves_out_header_text_and_side_panels(name: str) -> None:
    image, _region = vendor_image(name)
    top, bottom, left, right = find_scan_area(image)
    w = image.shape[1]
    # Header and footer text lines and side panels of settings lie outside these limits (by eye).
    limits = {
        "US1_UNCR.dcm": (100, 345, 0, w),
        "JPGLosslessP14SV1_1s_1f_8b.dcm": (140, 700, 100, 960),
        "color3d_jpeg_baseline.dcm": (25, 420, 90, 600),
    }[name]
    assert top >= limits[0] and bottom <= limits[1] and left >= limits[2] and right <= limits[3]


@pytest.mark.parametrize("name", ["US1_UNCR.dcm", "OBXXXX1A.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
def test_vendor_box_survives_darkening(name: str) -> None:
    image, _region = vendor_image(name)
    reference = find_scan_area(image)
    for change in ("gain 0.7", "gamma 1.5", "jpeg 30"):
        assert iou(find_scan_area(CHANGES[change](image)), reference) >= 0.85, change
