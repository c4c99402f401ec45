"""Per-image numbers derived from logits and pixels: softmax, energy, and a blank-frame check."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from app.preprocess import Box

# A frame whose scan area varies less than this (grey levels, 0..255) carries no anatomy.
BLANK_STD = 4.0
# ...or whose scan area is almost entirely black.
BLANK_BRIGHT_FRACTION = 0.02
BRIGHT_LEVEL = 16


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def energy_score(logits: np.ndarray) -> np.ndarray:
    """Energy −logsumexp(logits) per row (Liu et al. 2020): higher is less familiar."""
    z = np.asarray(logits, dtype=np.float64)
    peak = z.max(axis=-1, keepdims=True)
    return -(peak[..., 0] + np.log(np.exp(z - peak).sum(axis=-1)))


# The score each OOD method of a model card (app.modelcard.OOD_METHODS) thresholds.
OOD_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"energy": energy_score}


def blank_frame_issue(pixels: np.ndarray, box: Box) -> str | None:
    """A reason when the scan area is blank or near-uniform, else None."""
    top, bottom, left, right = box
    # Every other pixel is plenty for a frame-level statistic and halves the cost each way.
    region = pixels[top:bottom:2, left:right:2]
    if region.size == 0:
        return "empty scan area"
    if region.ndim == 2:  # a grey plane: its RGB version's brightest channel is the plane
        grey = region
    else:
        grey = np.maximum(np.maximum(region[:, :, 0], region[:, :, 1]), region[:, :, 2])
    _, std = cv2.meanStdDev(grey)
    if float(std[0, 0]) < BLANK_STD:
        return "blank or near-uniform frame"
    if cv2.countNonZero((grey > BRIGHT_LEVEL).astype(np.uint8)) < BLANK_BRIGHT_FRACTION * grey.size:
        return "almost entirely dark frame"
    return None
