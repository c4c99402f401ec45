"""Image → model input. The single implementation shared by training and serving.

Every step is a pure function of its inputs. The parameters come from the
model card (see ``PreprocessSpec.from_card``), so that a model is always fed
exactly the way it was trained.
"""

from __future__ import annotations

import functools
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


def _background_level(smooth: np.ndarray) -> tuple[int, int]:
    """(level, spread) of the frame's own background, the darkest sizeable population of greys.

    The level is the histogram's peak among the 16 greys from the 2nd percentile up; the spread
    is how far that peak reaches upwards (noise, compression ringing): the first level above it
    holding under 1/20 of the peak's count.
    """
    hist = cv2.calcHist([smooth], [0], None, [256], [0, 256]).ravel()
    low = int(np.searchsorted(np.cumsum(hist), 0.02 * smooth.size))
    level = low + int(np.argmax(hist[low : low + 16]))
    above = np.nonzero(hist[level + 1 :] < hist[level] / 20.0)[0]
    spread = int(above[0]) + 1 if above.size else 1
    return level, spread


# Bumped whenever find_scan_area's boxes can change, so that caches of cropped images
# (app.training.trainer.RegionCache) made by an earlier algorithm are not reused.
# 2: the threshold is relative to the frame's own background (no fixed grey level).
SCAN_AREA_VERSION = 2


def find_scan_area(image: np.ndarray, min_fraction: float = 0.05, min_step: int = 2) -> Box:
    """Locate the ultrasound field of view: the largest blob brighter than the frame's background.

    The threshold is relative to the frame itself, not a fixed grey: the background level is the
    darkest sizeable population of greys of a 5×5 median-filtered image (the median also removes
    JPEG ringing, speckle outliers and 1-2 px text strokes), and the scan area is everything at
    least `min_step` greys (or the background's own noise spread, if wider) above it. So a
    darker, brighter, gamma-mapped, tinted (the brightest channel is used) or low-contrast frame
    gives the same box. Burned-in annotations, rulers and colour bars are thin or small, so a
    morphological opening removes them before the largest connected component is taken; a
    closing joins the scan area across dark fluid. Falls back to the whole image when nothing
    plausible is found. On the synthetic phantoms (black background, sector ≥ grey 16) this is
    the same box as the former fixed threshold at grey 12 (tests/test_scan_area.py).
    """
    if image.ndim == 2 and image.dtype == np.uint8:
        grey = image  # a grey plane is its RGB version's brightest channel
    else:
        rgb = ensure_rgb_uint8(image)
        grey = cv2.max(cv2.max(rgb[:, :, 0], rgb[:, :, 1]), rgb[:, :, 2])
    h, w = grey.shape
    smooth = cv2.medianBlur(grey, 5) if min(h, w) >= 5 else grey
    background, spread = _background_level(smooth)
    mask = (smooth > background + max(min_step, spread)).astype(np.uint8)
    k = max(3, (min(h, w) // 60) | 1)
    # Strokes up to k px wide go (text, ruler ticks); what is left keeps its exact outline.
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    core = _core(opened, k, min_fraction)
    if core is None:
        return (0, h, 0, w)
    # The box: every piece of the (narrowly) opened mask that touches the core, so the wide
    # opening's rounded corners come back but nothing merely near the scan area is added.
    n_pieces, pieces = cv2.connectedComponents(opened, connectivity=8)
    keep = np.bincount(pieces[core > 0], minlength=n_pieces) > 0
    keep[0] = False
    left, top, width, height = cv2.boundingRect(
        np.where(keep, 255, 0).astype(np.uint8)[pieces] if keep.any() else core
    )
    return (top, top + height, left, left + width)


def _core(opened: np.ndarray, k: int, min_fraction: float) -> np.ndarray | None:
    """The scan area's core (uint8 0/255 at full size), or None when there is no plausible one.

    A wider opening also drops blurred or bold annotations, then a closing joins the scan area
    across dark fluid and shadows; the core is the largest component. The core is coarse, so it
    is found at half resolution on frames over 400 px (a few times faster).
    """
    h, w = opened.shape
    scale = 2 if min(h, w) > 400 else 1
    small = opened if scale == 1 else cv2.resize(opened, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
    wide, join = (2 * k + 1) // scale | 1, max(3, 3 * k // scale)
    small = cv2.morphologyEx(small, cv2.MORPH_OPEN, np.ones((wide, wide), np.uint8))
    small = cv2.morphologyEx(small, cv2.MORPH_CLOSE, np.ones((join, join), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(small, connectivity=8)
    if count <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] * scale * scale < min_fraction * h * w:
        return None
    chosen = np.where(labels == best, 255, 0).astype(np.uint8)
    if scale == 1:
        return chosen
    return cv2.resize(chosen, (w, h), interpolation=cv2.INTER_NEAREST)


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    top, bottom, left, right = box
    if not (0 <= top < bottom <= image.shape[0] and 0 <= left < right <= image.shape[1]):
        raise ValueError(f"crop box {box} lies outside an image of shape {image.shape[:2]}")
    return image[top:bottom, left:right]


# Filters whose OpenCV result on a grey plane equals every channel of the same plane as RGB, so
# that a grey image may be resized once instead of three times (tests/test_preprocess_grey.py
# checks it on the installed OpenCV; "cubic" differs by one level on some pixels).
GREY_EXACT_INTERPOLATIONS: tuple[str, ...] = ("area", "linear")


def resize(image: np.ndarray, size: tuple[int, int], interpolation: str = "area") -> np.ndarray:
    height, width = size
    return cv2.resize(image, (width, height), interpolation=_INTERPOLATIONS[interpolation])


def _standardise(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """The one formula: x (uint8, last axis the channels) → float32 scaled to [0, 1], standardised."""
    x = x.astype(np.float32) / 255.0
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


@functools.lru_cache(maxsize=8)
def _standardise_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """3×256 float32: ``_standardise`` of every uint8 value, per channel (read-only)."""
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], len(mean), axis=1)
    table = np.ascontiguousarray(_standardise(values, mean, std).T)
    table.setflags(write=False)
    return table


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 H×W×3 → float32 3×H×W, scaled to [0, 1] then standardised per channel. An H×W grey
    plane stands for the RGB image with that plane in every channel.

    A uint8 channel has 256 values: each is looked up in a table of the same formula's results
    (bit-identical, elementwise), which is several times faster than the float arithmetic.
    """
    if image.ndim == 2:
        planes = [image] * len(mean)
    elif image.ndim == 3 and image.shape[2] == len(mean):
        planes = [image[:, :, channel] for channel in range(image.shape[2])]
    else:
        raise ValueError(f"cannot normalise an image of shape {image.shape} with {len(mean)} channel means")
    if image.dtype != np.uint8:
        return np.ascontiguousarray(_standardise(np.stack(planes, axis=2), mean, std).transpose(2, 0, 1))
    table = _standardise_table(tuple(map(float, mean)), tuple(map(float, std)))
    out = np.empty((len(planes), image.shape[0], image.shape[1]), np.float32)
    for channel, plane in enumerate(planes):
        np.take(table[channel], plane, out=out[channel])
    return out


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
