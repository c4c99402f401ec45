"""Burned-in scanner annotations: header text, a depth ruler, calipers and the probe marker.

Each site puts its text and ruler in its own corners (`layout`) and colour. Text and
ruler strokes are 1 px and lie outside the sector, so scan-area detection ignores them;
calipers are drawn inside it, as a sonographer's measurement is.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.synth.geometry import Sector
from app.synth.sites import CLASSIC, FOOTER, MIRRORED

_FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_GREY = 200
Colour = int | tuple[int, int, int]


def _text(image: np.ndarray, text: str, x: int, y: int, colour: Colour, scale: float = 0.38) -> None:
    cv2.putText(image, text, (x, y), _FONT, scale, colour, 1, cv2.LINE_AA)


def _right_aligned(image: np.ndarray, text: str, y: int, colour: Colour) -> None:
    width = cv2.getTextSize(text, _FONT, 0.38, 1)[0][0]
    _text(image, text, image.shape[1] - 6 - width, y, colour)


def _ruler(image: np.ndarray, sector: Sector, depth_mm: float, x: int, outward: int, colour: Colour) -> None:
    """Depth ruler: a tick per centimetre, labelled every 5 cm; ticks point away from the sector."""
    top = round(sector.apex_y + sector.r_min)
    bottom = round(sector.apex_y + sector.r_max)
    px_per_mm = (sector.r_max - sector.r_min) / depth_mm
    cv2.line(image, (x, top), (x, bottom), colour, 1)
    for cm in range(int(depth_mm // 10) + 1):
        y = round(top + cm * 10 * px_per_mm)
        major = cm % 5 == 0
        cv2.line(image, (x, y), (x + outward * (8 if major else 4), y), colour, 1)
        if major and cm:
            _text(image, str(cm), x + (10 if outward > 0 else -18), y + 4, colour, 0.32)
    _text(image, "cm", x + (6 if outward > 0 else -20), min(bottom + 16, image.shape[0] - 4), colour, 0.32)


def burn_in(
    image: np.ndarray,
    sector: Sector,
    depth_mm: float,
    header: str,
    acquired: str,
    settings_line: str,
    layout: str = CLASSIC,
    colour: Colour = TEXT_GREY,
) -> None:
    """Draw annotations in place in the site's `layout`."""
    height, width = image.shape[:2]
    settings = [line.strip() for line in settings_line.split("|")[:2]]
    if layout == MIRRORED:
        _right_aligned(image, header, 14, colour)
        _text(image, acquired, 6, 14, colour)
        _right_aligned(image, "SYNTHETIC - NOT A PATIENT", 30, colour)
        for i, line in enumerate(settings):
            _right_aligned(image, line, height - 22 + 14 * i, colour)
        _ruler(image, sector, depth_mm, 30, -1, colour)
    elif layout == FOOTER:
        _text(image, header, 6, height - 22, colour)
        _text(image, "SYNTHETIC - NOT A PATIENT", 6, height - 8, colour)
        _right_aligned(image, acquired, 14, colour)
        for i, line in enumerate(settings):
            _text(image, line, 6, 14 + 14 * i, colour)
        _ruler(image, sector, depth_mm, width - 30, 1, colour)
    else:
        _text(image, header, 6, 14, colour)
        _text(image, acquired, width - 150, 14, colour)
        _text(image, "SYNTHETIC - NOT A PATIENT", 6, 30, colour)
        for i, line in enumerate(settings):
            _text(image, line, 6, height - 22 + 14 * i, colour)
        _ruler(image, sector, depth_mm, width - 30, 1, colour)


def calipers(image: np.ndarray, ends: np.ndarray, colour: Colour) -> None:
    """Two '+' calipers joined by a dotted line, as left on the frame after a measurement."""
    (x0, y0), (x1, y1) = np.round(ends).astype(int)
    for x, y in ((x0, y0), (x1, y1)):
        cv2.line(image, (x - 5, y), (x + 5, y), colour, 1)
        cv2.line(image, (x, y - 5), (x, y + 5), colour, 1)
    steps = max(2, int(np.hypot(x1 - x0, y1 - y0) // 6))
    for k in range(1, steps):
        f = k / steps
        cv2.circle(image, (round(x0 + f * (x1 - x0)), round(y0 + f * (y1 - y0))), 0, colour, -1)


def orientation_marker(image: np.ndarray, sector: Sector, colour: Colour) -> None:
    """The probe-side dot beside the sector's top-left corner; small, so cropping ignores it."""
    x, y = sector.to_image(sector.r_min, -sector.half_angle)
    cx = int(np.clip(round(float(x)) - 14, 4, image.shape[1] - 5))
    cy = int(np.clip(round(float(y)) - 10, 4, image.shape[0] - 5))
    cv2.circle(image, (cx, cy), 3, colour, -1)
