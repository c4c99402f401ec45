"""Burned-in scanner annotations: header text and a depth ruler, drawn outside the sector."""

from __future__ import annotations

import cv2
import numpy as np

from app.synth.geometry import Sector

_FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_GREY = 200


def _text(image: np.ndarray, text: str, x: int, y: int, scale: float = 0.38) -> None:
    cv2.putText(image, text, (x, y), _FONT, scale, TEXT_GREY, 1, cv2.LINE_AA)


def burn_in(
    image: np.ndarray,
    sector: Sector,
    depth_mm: float,
    header: str,
    acquired: str,
    settings_line: str,
) -> None:
    """Draw annotations in place. Strokes are 1 px, so scan-area detection ignores them."""
    _text(image, header, 6, 14)
    _text(image, acquired, sector.width - 150, 14)
    _text(image, "SYNTHETIC - NOT A PATIENT", 6, 30)
    for i, line in enumerate(settings_line.split("|")[:2]):
        _text(image, line.strip(), 6, sector.height - 22 + 14 * i)
    # Depth ruler along the right edge: a tick per centimetre, labelled every 5 cm.
    x = sector.width - 30
    top = round(sector.apex_y + sector.r_min)
    px_per_mm = (sector.r_max - sector.r_min) / depth_mm
    cv2.line(image, (x, top), (x, round(sector.apex_y + sector.r_max)), TEXT_GREY, 1)
    for cm in range(int(depth_mm // 10) + 1):
        y = round(top + cm * 10 * px_per_mm)
        major = cm % 5 == 0
        cv2.line(image, (x, y), (x + (8 if major else 4), y), TEXT_GREY, 1)
        if major and cm:
            _text(image, str(cm), x + 10, y + 4, 0.32)
    _text(image, "cm", x + 6, round(sector.apex_y + sector.r_max) + 16, 0.32)
