"""Training-time augmentation suited to B-mode ultrasound, on uint8 RGB images.

Probe angle and zoom vary a little between sonographers (small rotations and scale), gain and
dynamic-range settings vary between machines (gain/contrast jitter), and speckle is multiplicative
noise. Sector images are never flipped vertically: the probe is always at the top. Left-right
mirroring is allowed because fetal position in the sector is arbitrary.

It runs on the resized network input rather than the full-resolution crop: the result is the same
up to interpolation and it is several times cheaper on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    max_rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_shift_fraction: float = 0.05
    horizontal_flip_p: float = 0.5
    gain_range: tuple[float, float] = (0.75, 1.25)
    contrast_range: tuple[float, float] = (0.75, 1.25)
    speckle_sigma_max: float = 0.2


def random_affine(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    h, w = image.shape[:2]
    angle = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg)
    scale = rng.uniform(*config.scale_range)
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    matrix[:, 2] += rng.uniform(-config.max_shift_fraction, config.max_shift_fraction, size=2) * (w, h)
    if rng.random() < config.horizontal_flip_p:
        # Mirror about the vertical centre line after the rotation: x' = w - 1 - x.
        matrix[0] = -matrix[0]
        matrix[0, 2] += w - 1
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def gain_contrast(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    x = image.astype(np.float32)
    centre = float(x.mean())
    x = (x - centre) * rng.uniform(*config.contrast_range) + centre
    x *= rng.uniform(*config.gain_range)
    return np.clip(x, 0, 255).astype(np.uint8)


def speckle(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Multiplicative, spatially correlated noise (real speckle grains span a few pixels)."""
    sigma = rng.uniform(0.0, config.speckle_sigma_max)
    h, w = image.shape[:2]
    coarse = rng.normal(1.0, sigma, size=(max(1, h // 2), max(1, w // 2))).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    # The same field on every channel keeps grey images grey.
    noisy = image.astype(np.float32) * np.clip(field, 0.0, None)[:, :, None]
    return np.clip(noisy, 0, 255).astype(np.uint8)


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None) -> np.ndarray:
    config = config or AugmentConfig()
    image = random_affine(image, rng, config)
    image = gain_contrast(image, rng, config)
    return speckle(image, rng, config)
