"""Train/serve skew: the training pipeline must feed the network exactly what serving feeds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from training_support import tiny_synth_dir

from app.ingest import ingest_paths
from app.preprocess import PreprocessSpec, to_model_input
from app.training.augment import (
    AugmentConfig,
    augment,
    gain_contrast,
    random_affine,
    random_blur,
    random_gamma,
    random_jpeg,
    speckle,
)
from app.training.data import DatasetError, describe_dataset, discover_samples, read_rgb
from app.training.trainer import RegionCache

__all__ = ["tiny_synth_dir"]


def test_eval_transform_equals_serving_preprocessing_exactly(tiny_synth_dir: Path) -> None:
    spec = PreprocessSpec()
    samples = discover_samples(tiny_synth_dir)[:4]
    cache = RegionCache(samples, spec)
    training_inputs = cache.batch(range(len(samples))).numpy()
    for sample, training_input in zip(samples, training_inputs, strict=True):
        served = ingest_paths([sample.path]).studies[0].images[0]
        assert np.array_equal(served.pixels, read_rgb(sample.path))
        serving_input = to_model_input(served.pixels, spec, served.scan_box)
        assert training_input.dtype == serving_input.dtype == np.float32
        assert np.array_equal(training_input, serving_input)


def test_discovery_reads_labels_patients_and_manifest(tiny_synth_dir: Path) -> None:
    samples = discover_samples(tiny_synth_dir)
    assert len(samples) == 20
    assert {s.label for s in samples} == {0, 1, 2, 3, 4}
    assert all(s.gestational_age_weeks is not None and s.mask is not None for s in samples)
    assert not any("masks" in s.path.parts or "dicom" in s.path.parts for s in samples)
    provenance = describe_dataset(tiny_synth_dir, samples)
    assert provenance["synthetic"] is True
    assert provenance["generator"] == {"tool": "fetalcns synth", "seed": 7, "patients": 10, "images": 20}


def test_a_folder_without_class_folders_gets_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    expected = r"expected .*<class>/<patient>/<image>\.png.*found folders: scans"
    with pytest.raises(DatasetError, match=expected):
        discover_samples(tmp_path)


def gradient_image() -> np.ndarray:
    """Grey image: bright top half (the probe side of a sector), dark bottom half."""
    image = np.full((64, 64, 3), 40, np.uint8)
    image[:32] = 200
    return image


def test_augmentation_never_flips_vertically() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        out = random_affine(gradient_image(), rng, AugmentConfig())
        assert out[8:24, 24:40].mean() > out[40:56, 24:40].mean()


def test_augmentation_keeps_shape_dtype_and_grey_levels_grey() -> None:
    rng = np.random.default_rng(1)
    image = gradient_image()
    for _ in range(10):
        out = augment(image, rng)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_speckle_is_multiplicative_and_gain_changes_brightness() -> None:
    rng = np.random.default_rng(2)
    black = np.zeros((32, 32, 3), np.uint8)
    assert not speckle(black, rng, AugmentConfig()).any()  # no signal, no speckle
    config = AugmentConfig(gain_range=(1.2, 1.2), contrast_range=(1.0, 1.0))
    brighter = gain_contrast(np.full((8, 8, 3), 100, np.uint8), rng, config)
    assert np.all(brighter == 120)


def test_gamma_augmentation_matches_the_evaluation_perturbation() -> None:
    from app.evaluation.perturb import gamma

    image = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
    config = AugmentConfig(gamma_range=(1.5, 1.5), gamma_p=1.0)
    assert np.array_equal(random_gamma(image, np.random.default_rng(0), config), gamma(image, 1.5))
    # Log-uniform: about half of the drawn exponents darken.
    rng = np.random.default_rng(1)
    mid = np.full((1, 1, 3), 128, np.uint8)
    darker = [random_gamma(mid, rng, AugmentConfig(gamma_p=1.0))[0, 0, 0] < 128 for _ in range(400)]
    assert 0.4 < np.mean(darker) < 0.6


def test_blur_augmentation_agrees_with_scipy_gaussian_filter() -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
    image = np.repeat(grey[:, :, None], 3, axis=2)
    config = AugmentConfig(blur_sigma_range=(1.2, 1.2), blur_p=1.0)
    out = random_blur(image, np.random.default_rng(0), config)
    reference = gaussian_filter(grey.astype(np.float64), 1.2, mode="reflect", truncate=4.0)
    # OpenCV filters uint8 in fixed point and rounds: within 1.5 grey levels, 0.5 on average.
    difference = np.abs(out[:, :, 0].astype(np.float64) - reference)
    assert difference.max() <= 1.5 and difference.mean() < 0.5


def test_jpeg_augmentation_keeps_grey_frames_grey_and_changes_pixels() -> None:
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
    image = np.repeat(grey[:, :, None], 3, axis=2)
    out = random_jpeg(image, np.random.default_rng(0), AugmentConfig(jpeg_quality_range=(20, 20), jpeg_p=1.0))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert not np.array_equal(out, image)
    untouched = random_jpeg(image, np.random.default_rng(0), AugmentConfig(jpeg_p=0.0))
    assert untouched is image
