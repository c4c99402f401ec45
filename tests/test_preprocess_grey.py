"""Grey planes and the table-driven normalisation give the model exactly the input the RGB image
and the float formula give (the upload prepares B-mode frames from their grey plane)."""

from __future__ import annotations

import numpy as np
import pytest

from app.inference.prepare import prepare_pixels
from app.inference.render import thumbnail
from app.labels import IMAGENET_MEAN, IMAGENET_STD
from app.preprocess import GREY_EXACT_INTERPOLATIONS, INTERPOLATIONS, PreprocessSpec, normalize, resize


def _formula(rgb: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """The normalisation as written before the table (the reference)."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@pytest.mark.parametrize("shape", [(224, 224, 3), (7, 5, 3), (1, 1, 3)])
def test_normalize_is_bit_identical_to_the_formula(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    rgb = rng.integers(0, 256, shape, dtype=np.uint8)
    rgb.flat[:2] = (0, 255)
    for mean, std in ((IMAGENET_MEAN, IMAGENET_STD), ((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))):
        got, expected = normalize(rgb, mean, std), _formula(rgb, mean, std)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert got.tobytes() == expected.tobytes()
        grey = rgb[:, :, 1].copy()
        assert normalize(grey, mean, std).tobytes() == _formula(np.dstack([grey] * 3), mean, std).tobytes()
    as_float = rgb.astype(np.float32)  # not uint8: the formula itself
    assert np.array_equal(
        normalize(as_float, IMAGENET_MEAN, IMAGENET_STD), _formula(as_float, IMAGENET_MEAN, IMAGENET_STD)
    )
    with pytest.raises(ValueError):
        normalize(rgb[:, :, :2], IMAGENET_MEAN, IMAGENET_STD)


def test_grey_exact_filters_resize_a_plane_as_each_channel_of_its_rgb_image() -> None:
    rng = np.random.default_rng(5)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(20, 700, 2))
        grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        for interpolation in GREY_EXACT_INTERPOLATIONS:
            for size in ((224, 224), (97, 301)):
                plane, full = resize(grey, size, interpolation), resize(rgb, size, interpolation)
                for channel in range(3):
                    assert np.array_equal(plane, full[:, :, channel]), (trial, interpolation, size)
        small = thumbnail(grey, 64)
        assert small.ndim == 2 and np.array_equal(np.dstack([small] * 3), thumbnail(rgb, 64))


def _fan(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    fan = (np.abs(np.arctan2(xx - width / 2, yy + 10)) < 0.7) & (np.hypot(xx - width / 2, yy + 10) < height)
    return (rng.gamma(2.0, 40.0, (height, width)) * fan).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("crop", ["scan_area", "none"])
def test_a_grey_plane_prepares_as_its_rgb_image(interpolation: str, crop: str) -> None:
    spec = PreprocessSpec(interpolation=interpolation, crop=crop)
    frames = [_fan(1, 240, 320), _fan(2, 300, 200), np.full((120, 160), 3, np.uint8)]
    for grey in frames:
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        for box in (None, (10, 100, 30, 150)):
            for metadata in ({"modality": "US"}, {}):
                a = prepare_pixels(grey, spec, box, metadata)
                b = prepare_pixels(rgb, spec, box, metadata)
                assert a.tensor.tobytes() == b.tensor.tobytes()
                assert (a.box, a.image_shape, a.quality_issue, a.not_ultrasound) == (
                    b.box,
                    b.image_shape,
                    b.quality_issue,
                    b.not_ultrasound,
                )
    assert prepare_pixels(frames[2], spec, None, {}).quality_issue is not None  # the blank one is flagged
