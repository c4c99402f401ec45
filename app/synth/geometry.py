"""The probe's field of view (a sector) and the maps between image and beam space.

Every probe is modelled as a sector: a curvilinear probe has its virtual apex a
little above the image, a phased array at the skin, and a linear array so far
above that the field is a near-rectangle (see app/synth/sites.py).

Rendering happens in beam space (rows = depth samples, columns = beams) where
attenuation and acoustic shadows run straight down the columns; scan conversion
maps the result back onto the displayed image, as a scanner does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # (top, bottom, left, right), bottom/right exclusive


@dataclass(frozen=True)
class Sector:
    """Pixel geometry of the field of view; the probe's virtual apex lies above the image."""

    height: int = 480
    width: int = 640
    apex_x: float = 320.0
    apex_y: float = -60.0
    r_min: float = 110.0
    r_max: float = 510.0
    half_angle_deg: float = 33.0
    n_beams: int = 256

    @property
    def half_angle(self) -> float:
        return math.radians(self.half_angle_deg)

    @property
    def n_samples(self) -> int:
        return round(self.r_max - self.r_min)

    def to_image(
        self, radius: np.ndarray | float, angle: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Polar (radius px, angle rad from the probe axis, positive to the right) → image x, y."""
        return (
            self.apex_x + np.asarray(radius) * np.sin(angle),
            self.apex_y + np.asarray(radius) * np.cos(angle),
        )

    def to_polar(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = np.asarray(x, float) - self.apex_x, np.asarray(y, float) - self.apex_y
        return np.hypot(dx, dy), np.arctan2(dx, dy)

    def contains(self, x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether points lie inside the sector, at least `margin` px from its border."""
        r, a = self.to_polar(x, y)
        lateral = r * np.sin(self.half_angle - np.abs(a))
        return (r >= self.r_min + margin) & (r <= self.r_max - margin) & (lateral >= margin)


@dataclass(frozen=True)
class SectorMaps:
    """Remap maps, in OpenCV's fixed-point form (CV_16SC2 + CV_16UC1) because it remaps faster."""

    to_beams: tuple[np.ndarray, np.ndarray]  # image → beam samples [n_samples, n_beams]
    to_image: tuple[np.ndarray, np.ndarray]  # beam samples → pixels of `box` (off-grid outside the sector)
    mask: np.ndarray  # bool [H, W]: inside the sector
    box: Box


@functools.lru_cache(maxsize=16)  # one entry per site's sector
def sector_maps(sector: Sector) -> SectorMaps:
    radii = np.linspace(sector.r_min, sector.r_max, sector.n_samples, dtype=np.float64)
    angles = np.linspace(-sector.half_angle, sector.half_angle, sector.n_beams, dtype=np.float64)
    bx, by = sector.to_image(radii[:, None], angles[None, :])
    ys, xs = np.mgrid[0 : sector.height, 0 : sector.width].astype(np.float64)
    r, a = sector.to_polar(xs, ys)
    row = (r - sector.r_min) / (sector.r_max - sector.r_min) * (sector.n_samples - 1)
    col = (a + sector.half_angle) / (2 * sector.half_angle) * (sector.n_beams - 1)
    mask = sector.contains(xs, ys)
    row[~mask] = -10
    col[~mask] = -10
    rows_in, cols_in = np.nonzero(mask)
    box = (int(rows_in.min()), int(rows_in.max()) + 1, int(cols_in.min()), int(cols_in.max()) + 1)
    return SectorMaps(
        to_beams=cv2.convertMaps(bx.astype(np.float32), by.astype(np.float32), cv2.CV_16SC2),
        to_image=cv2.convertMaps(
            col[box[0] : box[1], box[2] : box[3]].astype(np.float32),
            row[box[0] : box[1], box[2] : box[3]].astype(np.float32),
            cv2.CV_16SC2,
        ),
        mask=mask,
        box=box,
    )
