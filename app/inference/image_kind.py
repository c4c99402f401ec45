"""Is this an ultrasound image at all? Pure functions of the header and the pixels.

The OOD signals measure how far an image lies from what the model has seen, which tells a
radiologist little when the answer is simply "this is a CT slice" or "this is a photograph".
Those two cases are cheap to recognise before the model is asked:

- the DICOM header says so: Modality (0008,0060) names another modality;
- the pixels say so: a B-mode scan is grey, and where a scanner adds colour (a Doppler box, a
  tinted grey map, coloured calipers or text) it covers a small part of the image or spans only
  a narrow band of hues. A photograph has colour over much of the frame, in many hues.

A header that says ultrasound is trusted over the pixels: a colour Doppler frame is still an
ultrasound image, and the OOD signals judge whether it is one this model can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

NOT_ULTRASOUND_WORDS = "not an ultrasound image"

# Modality (0008,0060) values of ultrasound images; "OT" (other) and an empty value are what
# secondary captures and converted exports carry, so they are judged by their pixels instead.
ULTRASOUND_MODALITIES = frozenset({"US", "IVUS"})
UNDECIDED_MODALITIES = frozenset({"", "OT"})

# A pixel is "coloured" when its saturation (max − min over max, in [0, 1]) exceeds this and it
# is not near black (value ≥ 40 of 255), where hue and saturation are noise.
SATURATION_MIN = 0.3
VALUE_MIN = 40
# A picture when at least this fraction of its non-dark pixels is coloured, in a spread of
# hues of at least this entropy (bits, 12 hue bins). A Doppler box (red and blue: about one
# bit) or a sepia or amber grey map (one hue bin) stays below the entropy bound.
COLOURED_FRACTION_MIN = 0.3
HUE_ENTROPY_MIN_BITS = 1.2
HUE_BINS = 12


def modality_reason(metadata: Mapping[str, Any]) -> str | None:
    """A reason when the DICOM header names a modality other than ultrasound; else None."""
    modality = str(metadata.get("modality") or "").strip().upper()
    if modality in ULTRASOUND_MODALITIES or modality in UNDECIDED_MODALITIES:
        return None
    return f"{NOT_ULTRASOUND_WORDS} (the DICOM header gives modality {modality})"


def colour_statistics(pixels: np.ndarray) -> tuple[float, float]:
    """(fraction of non-dark pixels that are coloured, entropy in bits of their hue histogram).

    ``pixels``: H×W×3 uint8 RGB. Hue in degrees as in HSV; the histogram has ``HUE_BINS`` equal
    bins over [0, 360). A grey or near-black image gives (0.0, 0.0).
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        return 0.0, 0.0
    rgb = pixels.astype(np.float32)
    value = rgb.max(axis=2)
    bright = value >= VALUE_MIN
    n_bright = int(bright.sum())
    if n_bright == 0:
        return 0.0, 0.0
    saturation = np.where(value > 0, (value - rgb.min(axis=2)) / np.maximum(value, 1e-6), 0.0)
    coloured = bright & (saturation > SATURATION_MIN)
    n_coloured = int(coloured.sum())
    if n_coloured == 0:
        return 0.0, 0.0
    # OpenCV's float HSV gives hue in degrees [0, 360).
    hue = cv2.cvtColor(rgb / 255.0, cv2.COLOR_RGB2HSV)[:, :, 0][coloured]
    counts, _ = np.histogram(hue, bins=HUE_BINS, range=(0.0, 360.0))
    p = counts[counts > 0] / n_coloured
    entropy = float(-(p * np.log2(p)).sum())
    return n_coloured / n_bright, max(entropy, 0.0)


def colour_picture_reason(pixels: np.ndarray) -> str | None:
    """A reason when the pixels look like a colour picture rather than a grey-scale scan."""
    fraction, entropy = colour_statistics(pixels)
    if fraction >= COLOURED_FRACTION_MIN and entropy >= HUE_ENTROPY_MIN_BITS:
        return f"{NOT_ULTRASOUND_WORDS} (a colour picture, not a grey-scale scan)"
    return None


def not_ultrasound_reason(pixels: np.ndarray, metadata: Mapping[str, Any] | None = None) -> str | None:
    """Why this is not an ultrasound image, or None when it may be one.

    The header decides when it names a modality; otherwise the pixels do.
    """
    metadata = metadata or {}
    by_header = modality_reason(metadata)
    if by_header is not None:
        return by_header
    modality = str(metadata.get("modality") or "").strip().upper()
    if modality in ULTRASOUND_MODALITIES:
        return None
    return colour_picture_reason(pixels)
