"""Model-resolution Grad-CAM (h×w) → a map at the original image geometry."""

from __future__ import annotations

import cv2
import numpy as np

from app.preprocess import Box


def cam_to_image(cam: np.ndarray, image_shape: tuple[int, int], box: Box) -> np.ndarray:
    """Upsample one class map onto ``box`` of an image of ``image_shape``; zero outside; max 1.

    The model saw the box stretched to its input size, so the h×w grid spans the box exactly;
    bilinear upsampling uses pixel-centre alignment (as torch's ``align_corners=False``).
    """
    height, width = image_shape
    top, bottom, left, right = box
    out = np.zeros((height, width), np.float32)
    source = np.nan_to_num(np.asarray(cam, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if source.size == 0 or float(source.max()) <= 0:
        return out
    resized = cv2.resize(source, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
    resized = np.maximum(resized, 0.0)
    # Normalised after upsampling so that the hottest displayed pixel is exactly 1.
    out[top:bottom, left:right] = resized / float(resized.max())
    return out
