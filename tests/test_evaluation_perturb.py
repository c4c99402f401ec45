"""The robustness report's image perturbations against independent computations (numpy formulas,
scipy.ndimage, Pillow's JPEG codec)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from app.evaluation import perturb


def _image(seed: int = 0, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    """Smooth structure plus texture, RGB uint8: enough detail for resampling and coding to show."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = 120 + 80 * np.sin(xs / 7.0) * np.cos(ys / 5.0)
    noise = ndimage.gaussian_filter(rng.normal(0, 30, shape), 1.0)
    grey = np.clip(base + noise, 0, 255)
    rgb = np.stack([grey, 0.8 * grey + 20, 255 - grey], axis=2)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("factor", [0.7, 1.3])
def test_gain_is_a_clipped_product(factor: float) -> None:
    image = _image()
    expected = np.minimum(np.floor(image.astype(np.float64) * factor + 0.5), 255)
    np.testing.assert_allclose(perturb.gain(image, factor), expected, atol=1)  # ties may round to even
    assert perturb.gain(image, factor).dtype == np.uint8


@pytest.mark.parametrize("exponent", [0.7, 1.5])
def test_gamma_follows_the_power_law(exponent: float) -> None:
    image = _image()
    expected = 255.0 * np.power(image / 255.0, exponent)
    out = perturb.gamma(image, exponent)
    assert np.abs(out - expected).max() <= 0.5 + 1e-9
    assert (out[image == 0] == 0).all() and (out[image == 255] == 255).all()


def test_contrast_and_tint_are_affine_per_channel() -> None:
    image = _image()
    low = perturb.contrast(image, 0.5)
    assert np.abs(low - (128 + 0.5 * (image.astype(float) - 128))).max() <= 0.5 + 1e-9
    assert perturb.contrast(np.zeros((2, 2, 3), np.uint8), 0.5).max() == 64
    tinted = perturb.tint(image, (1.0, 0.5, 1.5))
    np.testing.assert_array_equal(tinted[:, :, 0], image[:, :, 0])
    assert np.abs(tinted[:, :, 1] - image[:, :, 1] * 0.5).max() <= 0.5 + 1e-9
    assert np.abs(tinted[:, :, 2] - np.minimum(image[:, :, 2] * 1.5, 255)).max() <= 0.5 + 1e-9


def test_blur_matches_scipy_gaussian_filter() -> None:
    image = _image(1)
    ours = perturb.blur(image, 2.0).astype(float)
    # OpenCV's BORDER_REFLECT repeats the edge pixel: scipy's "reflect"; both truncate at 4 sigma.
    reference = np.stack(
        [
            ndimage.gaussian_filter(image[:, :, c].astype(float), 2.0, mode="reflect", truncate=4.0)
            for c in range(3)
        ],
        axis=2,
    )
    assert np.abs(ours - reference).max() <= 1.0


def test_jpeg_round_trip_is_close_to_pillows_codec() -> None:
    image = _image(2, (128, 160))
    ours = perturb.jpeg(image, 30).astype(float)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=30, subsampling=2)  # 4:2:0, like OpenCV
    reference = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), float)
    assert np.abs(ours - reference).mean() < 1.0
    # It is lossy at this quality: both codecs move the pixels by about as much.
    loss_ours, loss_pillow = np.abs(ours - image).mean(), np.abs(reference - image).mean()
    assert loss_ours > 1.0 and abs(loss_ours - loss_pillow) < 0.5


@pytest.mark.parametrize("degrees", [15.0, -15.0])
def test_rotation_matches_scipy_about_the_centre(degrees: float) -> None:
    image = _image(3, (81, 101))
    ours = perturb.rotate(image, degrees).astype(float)
    reference = ndimage.rotate(
        image.astype(float), degrees, axes=(1, 0), reshape=False, order=1, mode="constant"
    )
    # Away from the corners (where the borders of the two implementations differ) they agree.
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    centre = np.hypot(ys - (h - 1) / 2, xs - (w - 1) / 2) < 0.45 * h
    assert np.abs(ours - reference)[centre].max() <= 2.0
    # And the direction is right: the other way round differs grossly.
    wrong = ndimage.rotate(
        image.astype(float), -degrees, axes=(1, 0), reshape=False, order=1, mode="constant"
    )
    assert np.abs(ours - wrong)[centre].mean() > 10


def test_flip_mirrors_left_right() -> None:
    image = _image(4)
    np.testing.assert_array_equal(perturb.flip(image), np.fliplr(image))


def test_narrow_sector_blacks_out_beyond_the_angle() -> None:
    image = np.full((48, 64, 3), 200, np.uint8)
    apex = (31.5, -6.0)
    out = perturb.narrow_sector(image, 20.0, apex)
    ys, xs = np.mgrid[0:48, 0:64].astype(float)
    dx, dy = xs - apex[0], ys - apex[1]
    inside = dy / np.hypot(dx, dy) >= np.cos(np.radians(20.0))  # the angle by dot product, not atan2
    np.testing.assert_array_equal(out[:, :, 0] > 0, inside)
    np.testing.assert_array_equal(out[inside], image[inside])
    # The default apex sits above the centre, where `fetalcns synth` puts its probe.
    np.testing.assert_array_equal(
        perturb.narrow_sector(image, 20.0), perturb.narrow_sector(image, 20.0, (31.5, -6.0))
    )


def test_every_perturbation_is_pure_and_keeps_shape_and_type() -> None:
    image = _image(5)
    before = image.copy()
    names = [p.name for p in perturb.ROBUSTNESS_SET]
    assert len(set(names)) == len(names) == 9
    for item in perturb.ROBUSTNESS_SET:
        out = item.apply(image)
        assert out.shape == image.shape and out.dtype == np.uint8, item.name
        assert out is not image
        np.testing.assert_array_equal(image, before)
    assert perturb.perturbation("jpeg_30").name == "jpeg_30"
    with pytest.raises(KeyError, match="unknown perturbation"):
        perturb.perturbation("sepia")
