"""What surrounds the fetus: maternal abdominal wall, placenta, amniotic fluid and stray limbs."""

from __future__ import annotations

import math

import cv2
import numpy as np

from app.synth.canvas import MEMBRANE, SOFT_TISSUE, Canvas
from app.synth.geometry import Sector


def _arc_band(
    layer: np.ndarray, sector: Sector, radius: float, width: float, start: float, stop: float, value: float
) -> None:
    """Fill a band at constant depth between beam angles `start`…`stop` (radians, right positive)."""
    centre = (round(sector.apex_x), round(sector.apex_y))
    r = round(radius)
    # OpenCV measures angles clockwise from +x; a beam at angle θ points at 90° − θ.
    cv2.ellipse(
        layer,
        centre,
        (r, r),
        0.0,
        90 - math.degrees(stop),
        90 - math.degrees(start),
        float(value),
        max(1, round(width)),
    )


def draw_environment(canvas: Canvas, sector: Sector, rng: np.random.Generator) -> float:
    """Draw the surroundings; returns the radius (px from the apex) where the amniotic cavity begins."""
    wide = sector.half_angle + 0.1
    depth = sector.r_min
    # Maternal abdominal wall: skin, fat and muscle layers separated by bright fascia.
    for _ in range(int(rng.integers(2, 4))):
        thickness = rng.uniform(8, 22)
        _arc_band(canvas.echo, sector, depth + thickness / 2, thickness, -wide, wide, rng.uniform(0.07, 0.25))
        depth += thickness
        _arc_band(canvas.echo, sector, depth, 2, -wide, wide, MEMBRANE * rng.uniform(0.5, 1.0))
    # Uterine wall, then often a placenta along part of it.
    _arc_band(canvas.echo, sector, depth + 6, 12, -wide, wide, SOFT_TISSUE * 1.3)
    cavity = depth + 12
    if rng.random() < 0.6:
        start = rng.uniform(-wide, 0.0)
        stop = start + rng.uniform(0.3, 0.7)
        if rng.random() < 0.5:
            _arc_band(canvas.echo, sector, depth + 30, 36, start, stop, 0.2)
            cavity = depth + 48
        else:
            _arc_band(canvas.echo, sector, sector.r_max - 10, 40, start, stop, 0.2)
    # A limb or two floating in the fluid, sometimes overlapped by the structure of interest.
    for _ in range(int(rng.integers(0, 3))):
        angle = rng.uniform(-sector.half_angle * 0.8, sector.half_angle * 0.8)
        radius = rng.uniform(sector.r_min + 80, sector.r_max - 30)
        x, y = sector.to_image(radius, angle)
        axes = (round(rng.uniform(25, 60)), round(rng.uniform(8, 14)))
        tilt = rng.uniform(0, 180)
        cv2.ellipse(canvas.echo, (round(float(x)), round(float(y))), axes, tilt, 0, 360, SOFT_TISSUE, -1)
        bone_axes = (round(axes[0] * 0.8), 2)
        cv2.ellipse(canvas.echo, (round(float(x)), round(float(y))), bone_axes, tilt, 0, 360, 0.7, -1)
        cv2.ellipse(canvas.absorption, (round(float(x)), round(float(y))), bone_axes, tilt, 0, 360, 0.08, -1)
    return cavity
