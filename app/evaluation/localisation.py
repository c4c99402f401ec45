"""Does the Grad-CAM point at the lesion? Pure functions of a CAM and a lesion mask.

Both arrays are at the original image geometry: the engine maps the model-resolution CAM back
through the scan box that preprocessing cropped (app.inference.cam.cam_to_image).
"""

from __future__ import annotations

import cv2
import numpy as np


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a boolean mask by `pixels` (a disc), tolerating a CAM peak just off the lesion edge."""
    mask = np.asarray(mask, bool)
    if pixels <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def cam_peak(cam: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the CAM maximum; None for an all-zero map (nothing was pointed at).

    Ties (a flat plateau) resolve to the centroid of the tied pixels, not to the first one in
    raster order, so the answer does not depend on scan direction.
    """
    cam = np.asarray(cam, np.float64)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0:
        return None
    rows, cols = np.nonzero(cam >= peak)
    return int(np.rint(rows.mean())), int(np.rint(cols.mean()))


def pointing_hit(cam: np.ndarray, mask: np.ndarray, tolerance_px: int = 5) -> bool:
    """Pointing game (Zhang et al. 2018): is the CAM's peak inside the (dilated) lesion mask?"""
    if cam.shape != mask.shape:
        raise ValueError(f"CAM {cam.shape} and mask {mask.shape} differ in size")
    peak = cam_peak(cam)
    if peak is None:
        return False
    return bool(dilate(mask, tolerance_px)[peak])


def cam_iou(cam: np.ndarray, mask: np.ndarray, fraction_of_max: float = 0.5) -> float:
    """IoU between the lesion mask and the CAM thresholded at `fraction_of_max` of its maximum."""
    if cam.shape != mask.shape:
        raise ValueError(f"CAM {cam.shape} and mask {mask.shape} differ in size")
    cam = np.asarray(cam, np.float64)
    truth = np.asarray(mask, bool)
    peak = float(cam.max()) if cam.size else 0.0
    predicted = cam >= fraction_of_max * peak if peak > 0 else np.zeros_like(truth)
    union = np.logical_or(predicted, truth).sum()
    if union == 0:
        return 0.0
    return float(np.logical_and(predicted, truth).sum() / union)
