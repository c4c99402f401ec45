"""The shared preprocessing against an independent re-implementation in Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.preprocess import PreprocessSpec, crop, ensure_rgb_uint8, find_scan_area, normalize, to_model_input


def _sector_image(rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((300, 400), np.uint8)
    yy, xx = np.mgrid[0:300, 0:400]
    radius = np.hypot(yy + 40, xx - 200)
    angle = np.degrees(np.arctan2(xx - 200, yy + 40))
    sector = (radius > 60) & (radius < 320) & (np.abs(angle) < 35)
    image[sector] = rng.integers(40, 255, size=int(sector.sum()), dtype=np.uint8)
    image[5:12, 5:80] = 255  # burned-in text outside the sector
    image[40:280:20, 390:396] = 200  # depth ruler ticks
    return image


def test_normalize_matches_manual_formula() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(8, 6, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = normalize(image, mean, std)
    assert out.shape == (3, 8, 6) and out.dtype == np.float32
    for c in range(3):
        expected = (image[:, :, c] / 255.0 - mean[c]) / std[c]
        np.testing.assert_allclose(out[c], expected, atol=1e-6)


def test_scan_area_ignores_text_and_ruler() -> None:
    image = _sector_image(np.random.default_rng(1))
    top, bottom, left, right = find_scan_area(image)
    # The text block spans columns 5-80 and the ruler columns 390-396: both must be left out.
    assert left >= 15 and right <= 388
    assert bottom <= 285
    assert (bottom - top) > 200 and (right - left) > 250


def test_blank_image_falls_back_to_whole_frame() -> None:
    assert find_scan_area(np.zeros((50, 70), np.uint8)) == (0, 50, 0, 70)


def test_to_model_input_close_to_pillow_reference() -> None:
    image = _sector_image(np.random.default_rng(2))
    spec = PreprocessSpec(interpolation="linear", crop="none")
    ours = to_model_input(image, spec)
    rgb = Image.fromarray(ensure_rgb_uint8(image)).resize((224, 224), Image.Resampling.BILINEAR)
    reference = normalize(np.asarray(rgb), spec.mean, spec.std)
    # OpenCV and Pillow differ in bilinear sampling when shrinking; compare the low frequencies.
    assert np.abs(ours.mean(axis=(1, 2)) - reference.mean(axis=(1, 2))).max() < 0.02


def test_crop_rejects_boxes_outside_the_image() -> None:
    with pytest.raises(ValueError):
        crop(np.zeros((10, 10), np.uint8), (0, 11, 0, 5))


def test_spec_round_trips_through_the_card() -> None:
    spec = PreprocessSpec(size=(192, 160), interpolation="linear")
    assert PreprocessSpec.from_card(spec.to_card()) == spec


def test_non_uint8_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ensure_rgb_uint8(np.zeros((4, 4), np.uint16))
