"""Training-time augmentation suited to B-mode ultrasound, on uint8 RGB images.

Probe angle and zoom vary a little between sonographers (small rotations and scale), gain and
dynamic-range settings vary between machines (gain/contrast jitter), and speckle is multiplicative
noise. Scanners and exports also differ in their grey map (gamma), their focus (blur) and lossy
export (JPEG): without those the model learns one machine's look and loses patients under a
darker grey map or a softer image. Sector images are never flipped vertically: the probe is always
at the top. Left-right mirroring is allowed because fetal position in the sector is arbitrary.

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
    # Drawn log-uniformly so that darkening (γ > 1) and brightening (γ < 1) are equally likely.
    gamma_range: tuple[float, float] = (0.6, 1.7)
    gamma_p: float = 0.5
    blur_sigma_range: tuple[float, float] = (0.3, 1.6)
    blur_p: float = 0.3
    jpeg_quality_range: tuple[int, int] = (20, 90)
    jpeg_p: float = 0.2


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


def random_gamma(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    if rng.random() >= config.gamma_p:
        return image
    low, high = np.log(config.gamma_range[0]), np.log(config.gamma_range[1])
    exponent = float(np.exp(rng.uniform(low, high)))
    table = 255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** exponent
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)[image]


def random_blur(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    if rng.random() >= config.blur_p:
        return image
    sigma = float(rng.uniform(*config.blur_sigma_range))
    radius = max(1, int(np.ceil(4 * sigma)))
    size = 2 * radius + 1
    return cv2.GaussianBlur(image, (size, size), sigma, sigma, borderType=cv2.BORDER_REFLECT)


def random_jpeg(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    if rng.random() >= config.jpeg_p:
        return image
    quality = int(rng.integers(config.jpeg_quality_range[0], config.jpeg_quality_range[1] + 1))
    grey = bool((image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all())
    # A grey frame goes through a one-channel JPEG, as scanners export it, so it stays grey.
    source = image[:, :, 0] if grey else image[:, :, ::-1]
    ok, data = cv2.imencode(".jpg", source, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return image
    if grey:
        decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        return np.ascontiguousarray(np.repeat(decoded[:, :, None], 3, axis=2))
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None) -> np.ndarray:
    config = config or AugmentConfig()
    image = random_affine(image, rng, config)
    image = gain_contrast(image, rng, config)
    image = random_gamma(image, rng, config)
    image = speckle(image, rng, config)
    image = random_blur(image, rng, config)
    return random_jpeg(image, rng, config)
