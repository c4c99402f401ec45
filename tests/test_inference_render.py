"""Overlays, heatmaps, thumbnails and CAM placement; the original image is never modified."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from app.inference.cam import cam_to_image
from app.inference.render import cam_levels, colormap, encode_png, heatmap_rgba, overlay, thumbnail
from tests.ingest_support import phantom


def sample_image() -> np.ndarray:
    grey = phantom(120, 160)
    return np.dstack([grey, grey // 2, 255 - grey])


def sample_cam(shape: tuple[int, int] = (120, 160)) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-((yy - 40) ** 2 + (xx - 100) ** 2) / 400.0).astype(np.float32)


def test_rendering_never_modifies_the_original() -> None:
    image = sample_image()
    cam = sample_cam()
    image_before, cam_before = image.copy(), cam.copy()
    outputs = [overlay(image, cam, 0.7), heatmap_rgba(cam), thumbnail(image, 50), thumbnail(image, 500)]
    encode_png(image)
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(cam, cam_before)
    for output in outputs:
        assert not np.shares_memory(output, image)


@pytest.mark.parametrize("opacity", [0.0, 0.25, 0.45, 1.0])
def test_overlay_equals_compositing_the_rgba_heatmap(opacity: float) -> None:
    image, cam = sample_image(), sample_cam()
    rgba = heatmap_rgba(cam).astype(float)
    # What a browser does: draw the heatmap with global alpha `opacity` over the image.
    alpha = opacity * rgba[:, :, 3:] / 255.0
    expected = image * (1 - alpha) + rgba[:, :, :3] * alpha
    assert np.abs(overlay(image, cam, opacity).astype(float) - expected).max() <= 1.0


def test_zero_opacity_or_cold_map_leaves_the_image_unchanged() -> None:
    image = sample_image()
    np.testing.assert_array_equal(overlay(image, sample_cam(), 0.0), image)
    np.testing.assert_array_equal(overlay(image, np.zeros((120, 160), np.float32), 0.9), image)


def test_hot_regions_are_red_and_cold_regions_blue() -> None:
    hot, cold = colormap(np.ones((1, 1))), colormap(np.zeros((1, 1)))
    assert hot[0, 0, 0] > 100 and hot[0, 0, 2] == 0
    assert cold[0, 0, 2] > 100 and cold[0, 0, 0] == 0
    rgba = heatmap_rgba(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert rgba[0, :, 3].tolist() == [0, 128, 255]


def test_overlay_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="opacity"):
        overlay(sample_image(), sample_cam(), 1.5)
    with pytest.raises(ValueError, match="does not match"):
        overlay(sample_image(), sample_cam((10, 10)))


def test_thumbnail_keeps_aspect_and_never_enlarges() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    assert thumbnail(image).shape == (144, 192, 3)
    assert thumbnail(image, 64).shape == (48, 64, 3)
    small = sample_image()
    np.testing.assert_array_equal(thumbnail(small, 500), small)


@pytest.mark.parametrize("channels", [None, 3, 4])
def test_png_round_trip_through_an_independent_decoder(channels: int | None) -> None:
    rng = np.random.default_rng(channels or 1)
    shape = (37, 53) if channels is None else (37, 53, channels)
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(array))))
    np.testing.assert_array_equal(decoded, array)


def test_png_refuses_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4), np.float32))


@pytest.mark.parametrize("box", [(0, 224, 0, 224), (33, 451, 43, 598), (10, 17, 5, 300)])
def test_cam_upsampling_matches_torch_bilinear(box: tuple[int, int, int, int]) -> None:
    raw = np.random.default_rng(1).random((7, 7)).astype(np.float32)
    raw[0, 0] = 0
    got = cam_to_image(raw, (480, 640), box)
    top, bottom, left, right = box
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(raw)[None, None],
        size=(bottom - top, right - left),
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    reference = reference / reference.max()
    np.testing.assert_allclose(got[top:bottom, left:right], reference, atol=1e-4)
    outside = np.ones((480, 640), bool)
    outside[top:bottom, left:right] = False
    assert (got[outside] == 0).all()
    assert got.max() == pytest.approx(1.0) and got.min() >= 0
    assert got.dtype == np.float32


def test_cold_or_invalid_cam_gives_zeros() -> None:
    assert cam_to_image(np.zeros((7, 7), np.float32), (50, 60), (0, 50, 0, 60)).max() == 0
    nan_map = np.full((7, 7), np.nan, np.float32)
    assert cam_to_image(nan_map, (50, 60), (0, 50, 0, 60)).max() == 0


def test_cam_levels_saturate_and_treat_nan_as_cold() -> None:
    cam = np.array([[np.nan, -1.0, 0.0, 0.5, 1.0, 2.0]], np.float32)
    assert cam_levels(cam).tolist() == [[0, 0, 0, 128, 255, 255]]
    with pytest.raises(ValueError, match="2-D"):
        cam_levels(np.zeros((2, 2, 2), np.float32))


# Lengths below, at and above common SIMD widths (4, 8, 16 floats) and a large map, with the
# non-finite cells at the start, inside the vector body and in the scalar tail.
@pytest.mark.parametrize("width", [1, 3, 7, 8, 15, 16, 17, 33, 257, 1031])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_cells_render_cold_at_every_position(width: int, bad: float) -> None:
    cam = np.full((2, width), 0.75, np.float32)
    positions = sorted({0, width // 2, width - 1})
    cam[:, positions] = bad
    levels = cam_levels(cam)
    assert (levels[:, positions] == 0).all()
    finite = np.ones(width, bool)
    finite[positions] = False
    assert (levels[:, finite] == round(0.75 * 255)).all()
    rgba = heatmap_rgba(cam)
    assert (rgba[:, positions, 3] == 0).all()
    # A cold cell takes the colour map's coldest colour, the same as an exact zero.
    assert (rgba[:, positions, :3] == heatmap_rgba(np.zeros((1, 1), np.float32))[0, 0, :3]).all()
    image = np.full((2, width, 3), 40, np.uint8)
    assert (overlay(image, cam)[:, positions] == 40).all()


def test_display_pngs_are_lossless_and_grey_when_the_channels_agree() -> None:
    from app.inference.render import encode_display_png, encode_jpeg, grey_if_equal

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (37, 51), dtype=np.uint8)
    rgb_grey = np.repeat(grey[:, :, None], 3, axis=2)
    colour = rng.integers(0, 256, (37, 51, 3), dtype=np.uint8)
    assert grey_if_equal(rgb_grey).shape == (37, 51)
    assert grey_if_equal(colour) is colour
    for image in (rgb_grey, colour):
        data = np.frombuffer(encode_display_png(image), np.uint8)
        back = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(back, image)
    # A grey PNG is smaller than the same pixels as RGB.
    assert len(encode_display_png(rgb_grey)) < len(encode_png(rgb_grey))
    jpeg = encode_jpeg(colour)
    assert jpeg[:3] == b"\xff\xd8\xff"
    with pytest.raises(ValueError, match="shape"):
        encode_jpeg(np.zeros((2, 2, 4), np.uint8))
