"""Image perturbations for the robustness report: pure functions of an H×W×3 uint8 display image.

Each returns a new uint8 image of the same shape (the input is never written to). They stand in
for what changes between scanners, settings and exports: overall gain, the grey map (gamma),
focus (blur), lossy export (JPEG), probe orientation (rotation, mirroring), field of view
(a narrower sector), a colour cast and a flat grey map (low contrast).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


def _lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)[image]


def gain(image: np.ndarray, factor: float) -> np.ndarray:
    """Overall brightness × factor, rounded and clipped to 0–255."""
    return _lut(image, np.arange(256, dtype=np.float64) * factor)


def gamma(image: np.ndarray, exponent: float) -> np.ndarray:
    """255 · (x / 255) ** exponent: above 1 darkens mid-greys, below 1 brightens them."""
    return _lut(image, 255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** exponent)


def contrast(image: np.ndarray, factor: float, centre: float = 128.0) -> np.ndarray:
    """Grey levels pulled towards `centre` (factor < 1): black becomes grey, white darker."""
    return _lut(image, centre + (np.arange(256, dtype=np.float64) - centre) * factor)


def tint(image: np.ndarray, rgb: tuple[float, float, float]) -> np.ndarray:
    """A colour cast: each channel × its own factor, rounded and clipped."""
    out = image.astype(np.float64) * np.asarray(rgb, np.float64)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation `sigma` pixels (kernel ±4σ, mirrored border)."""
    radius = max(1, math.ceil(4 * sigma))
    size = 2 * radius + 1
    return cv2.GaussianBlur(image, (size, size), sigma, sigma, borderType=cv2.BORDER_REFLECT)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round trip through baseline JPEG at `quality` (OpenCV's libjpeg, 4:2:0 for colour)."""
    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(decoded[:, :, ::-1])


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation about the image centre, counter-clockwise as displayed; bilinear, black outside."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    return cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def flip(image: np.ndarray) -> np.ndarray:
    """Mirror left–right (the probe turned round)."""
    return np.ascontiguousarray(image[:, ::-1])


def sector_mask(
    shape: tuple[int, int], half_angle_deg: float, apex: tuple[float, float] | None = None
) -> np.ndarray:
    """Pixels within `half_angle_deg` of the vertical through `apex` (x, y; default above the centre)."""
    h, w = shape
    ax, ay = apex if apex is not None else ((w - 1) / 2.0, -0.125 * h)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.abs(np.degrees(np.arctan2(xs - ax, ys - ay))) <= half_angle_deg


def narrow_sector(
    image: np.ndarray, half_angle_deg: float, apex: tuple[float, float] | None = None
) -> np.ndarray:
    """A narrower field of view: black outside ±half_angle_deg of the probe axis through `apex`.

    The default apex, centred and one eighth of the height above the top edge, is where
    `fetalcns synth` puts its probe (640×480 frames, apex at (320, −60)).
    """
    out = image.copy()
    out[~sector_mask(image.shape[:2], half_angle_deg, apex)] = 0
    return out


@dataclass(frozen=True)
class Perturbation:
    name: str  # short key, used in metrics.json
    description: str  # what the report prints
    apply: Callable[[np.ndarray], np.ndarray]


# The evaluation's robustness section, in the order it is reported.
ROBUSTNESS_SET: tuple[Perturbation, ...] = (
    Perturbation("gain_0.7", "gain −30 % (every grey × 0.7)", lambda im: gain(im, 0.7)),
    Perturbation("gain_1.3", "gain +30 % (every grey × 1.3, clipped)", lambda im: gain(im, 1.3)),
    Perturbation("gamma_0.7", "gamma 0.7 (brighter mid-greys)", lambda im: gamma(im, 0.7)),
    Perturbation("gamma_1.5", "gamma 1.5 (darker mid-greys)", lambda im: gamma(im, 1.5)),
    Perturbation("blur", "Gaussian blur, σ = 2 px", lambda im: blur(im, 2.0)),
    Perturbation("jpeg_30", "JPEG round trip, quality 30", lambda im: jpeg(im, 30)),
    Perturbation("rotate_15", "rotation 15° about the centre", lambda im: rotate(im, 15.0)),
    Perturbation("narrow_sector", "sector narrowed to ±22° (from ±33°)", lambda im: narrow_sector(im, 22.0)),
    Perturbation("flip", "left–right mirror", flip),
)


def perturbation(name: str) -> Perturbation:
    for item in ROBUSTNESS_SET:
        if item.name == name:
            return item
    raise KeyError(f"unknown perturbation {name!r}; known: {', '.join(p.name for p in ROBUSTNESS_SET)}")
