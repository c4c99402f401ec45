"""Image → model input. The single implementation shared by training and serving.

Every step is a pure function of its inputs. The parameters come from the
model card (see ``PreprocessSpec.from_card``), so that a model is always fed
exactly the way it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from app.labels import IMAGENET_MEAN, IMAGENET_STD

# A box is (top, bottom, left, right) in pixel coordinates, bottom/right exclusive.
Box = tuple[int, int, int, int]

_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}

# The closed vocabularies of a model card's "input" block (validated by app.modelcard).
# Each value names code in this module; a value outside them would be served wrongly.
INTERPOLATIONS: tuple[str, ...] = tuple(_INTERPOLATIONS)  # resize(): OpenCV's filter
CROPS: tuple[str, ...] = ("scan_area", "none")  # scan_box(): detect the scan area, or the whole image
COLOR_MODES: tuple[str, ...] = ("RGB",)  # ensure_rgb_uint8() always yields RGB
RESIZE_MODES: tuple[str, ...] = ("stretch",)  # resize() stretches the box to the size, no letterbox
LAYOUTS: tuple[str, ...] = ("NCHW",)  # normalize() transposes to channels first
DTYPES: tuple[str, ...] = ("float32",)  # normalize() yields float32


@dataclass(frozen=True)
class PreprocessSpec:
    size: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color_mode: str = "RGB"
    interpolation: str = "area"  # one of INTERPOLATIONS
    crop: str = "scan_area"  # one of CROPS

    def __post_init__(self) -> None:
        # Model cards are checked field by field by app.modelcard; this guards direct construction.
        for name, value, allowed in (
            ("interpolation", self.interpolation, INTERPOLATIONS),
            ("crop", self.crop, CROPS),
            ("color_mode", self.color_mode, COLOR_MODES),
        ):
            if value not in allowed:
                raise ValueError(f"PreprocessSpec.{name} must be one of {', '.join(allowed)}, got {value!r}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"PreprocessSpec.size must be two positive integers, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("PreprocessSpec.mean and .std need 3 values each, std above 0")

    def to_card(self) -> dict[str, object]:
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "color_mode": self.color_mode,
            "interpolation": self.interpolation,
            "crop": self.crop,
            "resize": "stretch",
            "layout": "NCHW",
            "dtype": "float32",
        }

    @classmethod
    def from_card(cls, card_input: dict[str, Any]) -> PreprocessSpec:
        """The spec of a card's "input" block, already checked by app.modelcard.validate_card."""
        size, mean, std = card_input["size"], card_input["mean"], card_input["std"]
        return cls(
            size=(int(size[0]), int(size[1])),
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            color_mode=str(card_input.get("color_mode", "RGB")),
            interpolation=str(card_input.get("interpolation", "area")),
            crop=str(card_input.get("crop", "scan_area")),
        )


def ensure_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Return an H×W×3 uint8 view of a grey, grey+alpha, RGB or RGBA uint8 image."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 display image, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 2:
        return np.repeat(image[:, :, :1], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"unsupported image shape {image.shape}")


def find_scan_area(image: np.ndarray, threshold: int = 12, min_fraction: float = 0.05) -> Box:
    """Locate the ultrasound field of view: the largest bright blob after opening.

    Burned-in annotations and depth rulers are thin strokes, so a morphological
    opening removes them before the largest connected component is taken.
    Falls back to the whole image when nothing plausible is found.
    """
    rgb = ensure_rgb_uint8(image)
    grey = rgb.max(axis=2)
    h, w = grey.shape
    mask = (grey > threshold).astype(np.uint8)
    k = max(3, (min(h, w) // 60) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((k * 3, k * 3), np.uint8))
    count, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return (0, h, 0, w)
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    if stats[best, cv2.CC_STAT_AREA] < min_fraction * h * w:
        return (0, h, 0, w)
    x, y = int(stats[best, cv2.CC_STAT_LEFT]), int(stats[best, cv2.CC_STAT_TOP])
    bw, bh = int(stats[best, cv2.CC_STAT_WIDTH]), int(stats[best, cv2.CC_STAT_HEIGHT])
    return (y, y + bh, x, x + bw)


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    top, bottom, left, right = box
    if not (0 <= top < bottom <= image.shape[0] and 0 <= left < right <= image.shape[1]):
        raise ValueError(f"crop box {box} lies outside an image of shape {image.shape[:2]}")
    return image[top:bottom, left:right]


def resize(image: np.ndarray, size: tuple[int, int], interpolation: str = "area") -> np.ndarray:
    height, width = size
    return cv2.resize(image, (width, height), interpolation=_INTERPOLATIONS[interpolation])


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 H×W×3 → float32 3×H×W, scaled to [0, 1] then standardised per channel."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def scan_box(image: np.ndarray, spec: PreprocessSpec, box: Box | None = None) -> Box:
    """The region the model sees: a given box (e.g. from DICOM ultrasound regions), else detected."""
    if box is not None:
        return box
    if spec.crop == "scan_area":
        return find_scan_area(image)
    return (0, image.shape[0], 0, image.shape[1])


def to_model_input(image: np.ndarray, spec: PreprocessSpec, box: Box | None = None) -> np.ndarray:
    """Full preprocessing of one display image (uint8) to a float32 3×H×W array."""
    rgb = ensure_rgb_uint8(image)
    region = crop(rgb, scan_box(rgb, spec, box))
    return normalize(resize(region, spec.size, spec.interpolation), spec.mean, spec.std)
