"""What the phantom draws on: tissue backscatter, bone absorption and the lesion mask.

Anatomy is drawn in a local frame (u along the structure's long axis, v across
it) so that each organ is described once and then placed, rotated or mirrored
anywhere in the sector.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# Linear backscatter amplitudes before log compression. Bone is specular and
# far brighter than soft tissue; fluid is anechoic.
FLUID = 0.006
BRAIN = 0.085
SOFT_TISSUE = 0.12
THALAMUS = 0.16
MEMBRANE = 0.42
CHOROID = 0.55

_SHIFT = 3  # cv2 fixed-point bits: sub-pixel polygon vertices
_SCALE = 1 << _SHIFT


@dataclass
class Canvas:
    echo: np.ndarray  # float32 [H, W], backscatter amplitude
    absorption: np.ndarray  # float32 [H, W], attenuation per pixel that casts acoustic shadows
    lesion: np.ndarray  # uint8 [H, W], 0 or 255

    @classmethod
    def blank(cls, height: int, width: int, echo: float = FLUID) -> Canvas:
        return cls(
            echo=np.full((height, width), echo, np.float32),
            absorption=np.zeros((height, width), np.float32),
            lesion=np.zeros((height, width), np.uint8),
        )


@dataclass
class DrawnGeometry:
    """What the renderer drew, in image pixels, so that tests can check where masks lie."""

    skull_contour: np.ndarray | None = None  # N×2 intended calvarium
    skull_present: np.ndarray | None = None  # N bools: False where the vault is missing or open
    spine_line: np.ndarray | None = None  # N×2 spinal canal centre line
    posterior_line: np.ndarray | None = None  # N×2 posterior elements (laminae)
    extent: list[np.ndarray] = field(default_factory=list)  # point sets that must lie inside the sector
    cavity_radius: float = 0.0  # the fetus must lie deeper than this (below the uterine wall)
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)  # non-CNS planes: named structures


@dataclass(frozen=True)
class LocalFrame:
    """Maps local (u, v) in pixels to image (x, y): u along `angle`, v perpendicular (mirrored by `flip`)."""

    cx: float
    cy: float
    angle: float
    flip: bool = False

    def to_image(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        v = -np.asarray(v, float) if self.flip else np.asarray(v, float)
        u = np.asarray(u, float)
        return np.stack([self.cx + u * c - v * s, self.cy + u * s + v * c], axis=-1)

    def axis_v(self) -> np.ndarray:
        """Image direction of +v."""
        sign = -1.0 if self.flip else 1.0
        return sign * np.array([-np.sin(self.angle), np.cos(self.angle)])


def ellipse_points(
    cu: float, cv: float, ru: float, rv: float, tilt: float = 0.0, n: int = 48
) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    u, v = ru * np.cos(t), rv * np.sin(t)
    c, s = np.cos(tilt), np.sin(tilt)
    return cu + u * c - v * s, cv + u * s + v * c


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def fill(layer: np.ndarray, points: np.ndarray, value: float) -> None:
    """Fill an image-space polygon (N×2) on a layer."""
    cv2.fillPoly(layer, [_fixed(points)], float(value), lineType=cv2.LINE_8, shift=_SHIFT)


def stroke(layer: np.ndarray, points: np.ndarray, value: float, thickness: int, closed: bool = False) -> None:
    cv2.polylines(
        layer, [_fixed(points)], closed, float(value), thickness=max(1, int(thickness)), shift=_SHIFT
    )


def fill_ellipse(
    canvas: Canvas,
    frame: LocalFrame,
    cu: float,
    cv: float,
    ru: float,
    rv: float,
    echo: float,
    tilt: float = 0.0,
    absorption: float = 0.0,
) -> np.ndarray:
    u, v = ellipse_points(cu, cv, ru, rv, tilt)
    pts = frame.to_image(u, v)
    fill(canvas.echo, pts, echo)
    if absorption:
        fill(canvas.absorption, pts, absorption)
    return pts


def mark_lesion(canvas: Canvas, points: np.ndarray, dilate: int = 0) -> None:
    """Add a polygon to the lesion mask, grown by `dilate` px so that the mask also covers its rim."""
    fill(canvas.lesion, points, 255)
    if dilate:
        stroke(canvas.lesion, points, 255, 2 * dilate + 1, closed=True)


def specular_stroke(
    canvas: Canvas,
    points: np.ndarray,
    present: np.ndarray,
    apex: tuple[float, float],
    peak_echo: float,
    absorption: float,
    thickness: int,
) -> None:
    """Draw bone along a closed polyline; brightness follows the incidence angle, as specular echoes do.

    Segments facing the probe return most energy; those parallel to the beam
    drop out, which is why the lateral skull walls look thin on real scans.
    Segments are grouped into a few brightness levels to draw each level in one call.
    """
    start = points
    end = np.roll(points, -1, axis=0)
    keep = present & np.roll(present, -1)
    d = end - start
    length = np.hypot(d[:, 0], d[:, 1])
    keep &= length > 0
    if not keep.any():
        return
    start, end, d, length = start[keep], end[keep], d[keep], length[keep]
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / length[:, None]
    beam = (start + end) / 2 - np.asarray(apex)
    beam /= np.hypot(beam[:, 0], beam[:, 1])[:, None]
    facing = np.abs(np.sum(normal * beam, axis=1))
    level = np.minimum((facing * 8).astype(int), 7)
    segments = np.round(np.stack([start, end], axis=1) * _SCALE).astype(np.int32)
    width = max(1, int(thickness))
    for k in np.unique(level):
        group = list(segments[level == k])
        brightness = peak_echo * (0.3 + 0.7 * ((k + 0.5) / 8) ** 2)
        cv2.polylines(canvas.echo, group, False, float(brightness), thickness=width, shift=_SHIFT)
    cv2.polylines(canvas.absorption, list(segments), False, float(absorption), thickness=width, shift=_SHIFT)
