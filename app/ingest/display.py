"""Decoded DICOM pixel values → display RGB uint8. Pure functions, no file access.

Greyscale follows the DICOM display pipeline (PS3.4 N.2): modality LUT, then VOI LUT or
window, then MONOCHROME1 inversion. Colour data arrive from pydicom already in RGB
(YBR_FULL/YBR_FULL_422 are converted by ``pixel_array(raw=False)``, and JPEG decoders
undo their own colour transform), so only the bit depth is reduced here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sample_frame_indices(n_frames: int, max_frames: int) -> list[int]:
    """Evenly spaced frame indices, first and last included, at most ``max_frames`` of them."""
    if n_frames <= 0 or max_frames <= 0:
        return []
    if n_frames <= max_frames:
        return list(range(n_frames))
    if max_frames == 1:
        return [n_frames // 2]
    positions = np.linspace(0, n_frames - 1, max_frames)
    return sorted({round(float(p)) for p in positions})


def window_to_uint8(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Apply a DICOM window (PS3.3 C.11.2.1.2) and map its output range to 0..255."""
    x = values.astype(np.float64)
    function = function.upper()
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError("window width must be positive")
        y = np.clip((x - center) / width + 0.5, 0.0, 1.0)
    else:
        if width < 1:
            raise ValueError("window width must be at least 1 for a LINEAR window")
        if width == 1:
            # The standard's formula divides by width-1: a width of 1 is a hard threshold.
            y = (x > center - 0.5).astype(np.float64)
        else:
            y = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    return np.round(y * 255.0).astype(np.uint8)


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map the image's own min..max to 0..255 (used when the file gives no window)."""
    x = values.astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.round((x - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def reduce_bit_depth(values: np.ndarray, bits_stored: int) -> np.ndarray:
    """Unsigned samples of ``bits_stored`` bits → uint8 by dropping the low bits."""
    if values.dtype == np.uint8 and bits_stored <= 8:
        return values
    if bits_stored <= 8:
        return np.clip(values, 0, 255).astype(np.uint8)
    shifted = values.astype(np.uint64) >> np.uint64(bits_stored - 8)
    return np.clip(shifted, 0, 255).astype(np.uint8)


def lut_output_to_uint8(values: np.ndarray, lut_max: float) -> np.ndarray:
    """Scale VOI/palette LUT output (0..lut_max) to 0..255."""
    if lut_max <= 0:
        return np.zeros(values.shape, np.uint8)
    return np.round(np.clip(values.astype(np.float64) / lut_max, 0.0, 1.0) * 255.0).astype(np.uint8)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def first_value(value: object) -> float:
    """Window centre/width may be multi-valued; the first pair is the default view."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return float(value[0])
    return float(value)  # type: ignore[arg-type]
