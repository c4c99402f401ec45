"""The "not an ultrasound image" gate: DICOM modality and colour pictures.

The colour statistics are checked against an independent computation (the standard library's
colorsys for hue and saturation, scipy for the entropy); the rule against real files: pydicom's
CT, MR and other non-ultrasound test files must be named by their header, and no vendor
ultrasound file (colour Doppler and RGB exports included) may be called "not ultrasound".
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
from ingest_support import vendor_file
from scipy.stats import entropy
from verdict_support import photo_like

from app.inference.aggregate import NOT_ULTRASOUND
from app.inference.analysis import exclusion_key
from app.inference.engine import InferenceEngine
from app.inference.image_kind import (
    HUE_BINS,
    SATURATION_MIN,
    VALUE_MIN,
    colour_picture_reason,
    colour_statistics,
    modality_reason,
    not_ultrasound_reason,
)
from app.ingest import ingest_paths
from app.preprocess import ensure_rgb_uint8

VENDOR_US = (
    "US1_UNCR.dcm",
    "US1_J2KR.dcm",
    "OBXXXX1A.dcm",
    "gdcm-US-ALOKA-16.dcm",
    "color3d_jpeg_baseline.dcm",
    "examples_rgb_color.dcm",
    "examples_palette.dcm",
)
OTHER_MODALITIES = ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "MR2_UNCR.dcm", "RG1_UNCR.dcm")


def reference_statistics(pixels: np.ndarray) -> tuple[float, float]:
    """colour_statistics, pixel by pixel with colorsys and scipy."""
    flat = pixels.reshape(-1, 3).astype(np.float64) / 255.0
    hues, n_bright = [], 0
    for r, g, b in flat:
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        if v * 255.0 < VALUE_MIN:
            continue
        n_bright += 1
        if s > SATURATION_MIN:
            hues.append(h * 360.0)
    if not hues:
        return 0.0, 0.0
    counts, _ = np.histogram(hues, bins=HUE_BINS, range=(0.0, 360.0))
    return len(hues) / n_bright, float(entropy(counts, base=2))


@pytest.mark.parametrize("seed", range(6))
def test_colour_statistics_match_colorsys_and_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    if seed % 2:  # mostly grey with a coloured patch, as a scan with a Doppler box
        grey = rng.integers(0, 256, size=(24, 32), dtype=np.uint8)
        pixels = np.repeat(grey[:, :, None], 3, axis=2)
        pixels[5:12, 8:20] = rng.integers(0, 256, size=(7, 12, 3), dtype=np.uint8)
    fraction, bits = colour_statistics(pixels)
    ref_fraction, ref_bits = reference_statistics(pixels)
    assert fraction == pytest.approx(ref_fraction, abs=1e-9)
    # Hue bin edges: float32 in OpenCV against float64 in colorsys may put a rare pixel one bin over.
    assert bits == pytest.approx(ref_bits, abs=0.05)


def test_grey_and_black_frames_have_no_colour() -> None:
    assert colour_statistics(np.zeros((10, 10, 3), np.uint8)) == (0.0, 0.0)
    grey = np.repeat(np.arange(100, dtype=np.uint8).reshape(10, 10, 1), 3, axis=2)
    assert colour_statistics(grey) == (0.0, 0.0)
    assert colour_picture_reason(grey) is None


def test_a_tinted_grey_map_and_a_doppler_box_are_not_pictures() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(64, 64), dtype=np.uint8).astype(np.float64)
    # A sepia grey map: colour everywhere, but one hue.
    sepia = np.clip(np.stack([grey, grey * 0.8, grey * 0.55], axis=2), 0, 255).astype(np.uint8)
    assert colour_statistics(sepia)[0] > 0.5
    assert colour_picture_reason(sepia) is None
    # A red/blue Doppler box over a third of a grey scan.
    doppler = np.repeat(grey[:, :, None], 3, axis=2).astype(np.uint8)
    doppler[10:40, 10:40] = [200, 30, 30]
    doppler[20:30, 20:30] = [30, 30, 200]
    assert colour_picture_reason(doppler) is None


@pytest.mark.parametrize("seed", range(14))
def test_photographs_are_colour_pictures(seed: int) -> None:
    reason = colour_picture_reason(photo_like(seed))
    assert reason == "not an ultrasound image (a colour picture, not a grey-scale scan)"


def test_modality_from_the_header() -> None:
    assert (
        modality_reason({"modality": "CT"}) == "not an ultrasound image (the DICOM header gives modality CT)"
    )
    assert modality_reason({"modality": "mr "}) is not None
    for undecided in ({}, {"modality": None}, {"modality": ""}, {"modality": "OT"}, {"modality": "US"}):
        assert modality_reason(undecided) is None
    # A header that says ultrasound is trusted over colourful pixels (colour Doppler).
    assert not_ultrasound_reason(photo_like(0), {"modality": "US"}) is None
    assert not_ultrasound_reason(photo_like(0), {"modality": "OT"}) is not None
    assert not_ultrasound_reason(np.zeros((8, 8, 3), np.uint8), {"modality": "CT"}) is not None


@pytest.mark.parametrize("name", OTHER_MODALITIES)
def test_other_modalities_in_pydicom_test_files_are_named_by_their_header(name: str) -> None:
    result = ingest_paths([vendor_file(name)])
    images = [image for study in result.studies for image in study.images]
    assert images, f"{name} should ingest"
    for image in images:
        reason = not_ultrasound_reason(ensure_rgb_uint8(image.pixels), image.metadata)
        assert reason is not None and "DICOM header gives modality" in reason


@pytest.mark.parametrize("name", VENDOR_US)
def test_vendor_ultrasound_is_never_called_not_ultrasound(name: str) -> None:
    result = ingest_paths([vendor_file(name)])
    images = [image for study in result.studies for image in study.images]
    assert images, f"{name} should ingest"
    for image in images:
        assert not_ultrasound_reason(ensure_rgb_uint8(image.pixels), image.metadata) is None


def test_the_engine_excludes_a_ct_slice_with_the_plain_reason(demo_model_dir: Path) -> None:
    engine = InferenceEngine(demo_model_dir, device="cpu", threads=2)
    result = ingest_paths([vendor_file("CT_small.dcm")])
    (prediction,) = engine.predict(result.studies[0].images)
    assert prediction.excluded and exclusion_key(prediction) == NOT_ULTRASOUND
    assert prediction.exclusion_reason == "not an ultrasound image (the DICOM header gives modality CT)"
