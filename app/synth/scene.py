"""One ultrasound image of a patient: choose the view, draw it, acquire it.

A `View` holds everything that stays fixed while the probe hovers over a
structure, so a cine loop is the same view rendered with small probe motion.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from app.synth.anatomy import PatientAnatomy
from app.synth.annotations import burn_in, calipers, orientation_marker
from app.synth.bmode import ScannerSettings, to_bmode
from app.synth.body import (
    ABDOMEN,
    FACE_PROFILE,
    FEMUR,
    FOUR_CHAMBER,
    OTHER_PLANES,
    draw_other_view,
    structure_mm,
)
from app.synth.canvas import Canvas, DrawnGeometry, LocalFrame
from app.synth.environment import draw_environment
from app.synth.geometry import Sector, sector_maps
from app.synth.head import (
    AXIAL_PLANES,
    CORONAL,
    draw_axial_head,
    draw_coronal_head,
)
from app.synth.planes import visible_planes
from app.synth.sites import DEFAULT_SITE, TINTS, Site
from app.synth.spine import SAGITTAL_SPINE, draw_sagittal_spine

PLANES: tuple[str, ...] = (*AXIAL_PLANES, CORONAL, SAGITTAL_SPINE)
ALL_PLANES: tuple[str, ...] = (*PLANES, *OTHER_PLANES)  # CNS planes, then the out-of-scope ones
DEFAULT_SECTOR = DEFAULT_SITE.sector
_FIT_MARGIN = 4.0
_MAX_TRIES = 40


@dataclass(frozen=True)
class View:
    plane: str
    frame: LocalFrame
    size_px: tuple[float, float]  # head: (OFD/2, BPD/2); spine: (length, 0); others: (structure_mm, 0)
    depth_mm: float
    settings: ScannerSettings
    detail_seed: int  # fixes the random anatomical details, identical in every cine frame
    site: Site = DEFAULT_SITE

    def moved(self, dx: float, dy: float, rotation: float) -> View:
        frame = replace(
            self.frame, cx=self.frame.cx + dx, cy=self.frame.cy + dy, angle=self.frame.angle + rotation
        )
        return replace(self, frame=frame)


@dataclass(frozen=True)
class RenderedImage:
    pixels: np.ndarray  # uint8 [H, W] grey, or [H, W, 3] RGB at tinted/colour-text sites
    mask: np.ndarray  # uint8 [H, W], 255 on the lesion, all zero for a normal image
    geometry: DrawnGeometry
    view: View
    sector: Sector


def _round_depth(depth_mm: float) -> float:
    return float(max(40.0, 10.0 * round(depth_mm / 10.0)))


def _draw(canvas: Canvas, view: View, anatomy: PatientAnatomy, sector: Sector) -> DrawnGeometry:
    rng = np.random.default_rng(view.detail_seed)
    if view.plane in PLANES and view.plane not in visible_planes(anatomy):
        # The section misses the lesion: the fetus looks normal here, though still labelled.
        anatomy = anatomy.as_normal()
    cavity = draw_environment(canvas, sector, rng)
    apex = (sector.apex_x, sector.apex_y)
    a, b = view.size_px
    if view.plane in OTHER_PLANES:
        geometry = draw_other_view(canvas, view.plane, view.frame, a, anatomy, rng, apex)
    elif view.plane == SAGITTAL_SPINE:
        geometry = draw_sagittal_spine(canvas, view.frame, a, anatomy, rng)
    elif view.plane == CORONAL:
        geometry = draw_coronal_head(canvas, view.frame, a, b, anatomy, rng, apex)
    else:
        geometry = draw_axial_head(canvas, view.frame, a, b, view.plane, anatomy, rng, apex)
    geometry.cavity_radius = cavity
    return geometry


def _fits(geometry: DrawnGeometry, sector: Sector) -> bool:
    for points in geometry.extent:
        x, y = points[:, 0], points[:, 1]
        if not sector.contains(x, y, _FIT_MARGIN).all():
            return False
        if (sector.to_polar(x, y)[0] < geometry.cavity_radius).any():
            return False
    return True


def _propose(plane: str, anatomy: PatientAnatomy, site: Site, rng: np.random.Generator) -> View:
    sector = site.sector
    span = sector.r_max - sector.r_min
    radius = sector.r_min + rng.uniform(0.45, 0.62) * span
    angle = rng.uniform(-site.lateral_jitter_rad, site.lateral_jitter_rad)
    cx, cy = (float(c) for c in sector.to_image(radius, angle))
    if plane in OTHER_PLANES:
        return _propose_other(plane, anatomy, site, cx, cy, rng)
    if plane == SAGITTAL_SPINE:
        chord = 2 * radius * np.sin(sector.half_angle)
        length_px = rng.uniform(0.7, 0.85) * chord * site.zoom
        depth = _round_depth(1.9 * anatomy.ofd_mm / length_px * span)
        length_px = 1.9 * anatomy.ofd_mm / (depth / span)
        heading = rng.uniform(-0.35, 0.35) + (np.pi if rng.random() < 0.5 else 0.0)
        frame = LocalFrame(cx, cy, heading)
        dorsal_up = rng.random() < 0.8
        if (frame.axis_v()[1] < 0) != dorsal_up:
            frame = replace(frame, flip=True)
        size = (length_px, 0.0)
    else:
        ofd_px = rng.uniform(0.5, 0.68) * span * (0.75 if plane == CORONAL else 1.0) * site.zoom
        depth = _round_depth(anatomy.ofd_mm / ofd_px * span)
        mm_per_px = depth / span
        size = (anatomy.ofd_mm / 2 / mm_per_px, anatomy.bpd_mm / 2 / mm_per_px)
        if plane == CORONAL:
            heading = -np.pi / 2 + rng.uniform(-0.6, 0.6)
            cy -= 0.15 * span  # the face hangs below the cranium
        else:
            heading = rng.uniform(0, 2 * np.pi)
        frame = LocalFrame(cx, cy, heading, flip=bool(rng.random() < 0.5))
    return View(
        plane=plane,
        frame=frame,
        size_px=size,
        depth_mm=depth,
        settings=ScannerSettings.sample(rng, site),
        detail_seed=int(rng.integers(0, 2**31)),
        site=site,
    )


# Fraction of the sector's depth that the structure setting the zoom spans (see body.structure_mm).
_OTHER_ZOOM = {
    ABDOMEN: (0.45, 0.62),
    FOUR_CHAMBER: (0.45, 0.62),
    FEMUR: (0.35, 0.5),
    FACE_PROFILE: (0.5, 0.65),
}


def _propose_other(
    plane: str, anatomy: PatientAnatomy, site: Site, cx: float, cy: float, rng: np.random.Generator
) -> View:
    span = site.sector.r_max - site.sector.r_min
    size_mm = structure_mm(plane, anatomy)
    low, high = _OTHER_ZOOM[plane]
    depth = _round_depth(size_mm / (rng.uniform(low, high) * site.zoom * span) * span)
    if plane == FEMUR:
        # Femurs are measured with the beam across the bone.
        heading = rng.uniform(-0.3, 0.3) + (np.pi if rng.random() < 0.5 else 0.0)
    elif plane == FACE_PROFILE:
        # The face turned up towards the probe, to one side; the body runs away from the probe.
        heading = -np.pi / 2 + rng.uniform(0.45, 1.1) * (1 if rng.random() < 0.5 else -1)
    else:
        heading = rng.uniform(0, 2 * np.pi)
    frame = LocalFrame(cx, cy, heading, flip=bool(rng.random() < 0.5))
    if plane == FACE_PROFILE and frame.axis_v()[1] < 0:
        frame = replace(frame, flip=not frame.flip)
    return View(
        plane=plane,
        frame=frame,
        size_px=(size_mm / (depth / span), 0.0),
        depth_mm=depth,
        settings=ScannerSettings.sample(rng, site),
        detail_seed=int(rng.integers(0, 2**31)),
        site=site,
    )


@dataclass(frozen=True)
class Composition:
    """A drawn scene before acquisition."""

    view: View
    canvas: Canvas
    geometry: DrawnGeometry


def compose(view: View, anatomy: PatientAnatomy) -> Composition:
    sector = view.site.sector
    canvas = Canvas.blank(sector.height, sector.width)
    return Composition(view, canvas, _draw(canvas, view, anatomy, sector))


def plan_view(
    plane: str, anatomy: PatientAnatomy, rng: np.random.Generator, site: Site = DEFAULT_SITE
) -> Composition:
    """A random probe position that keeps the structure (and any lesion) inside the sector."""
    if plane not in ALL_PLANES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {', '.join(ALL_PLANES)}")
    for _ in range(_MAX_TRIES):
        composition = compose(_propose(plane, anatomy, site, rng), anatomy)
        if _fits(composition.geometry, site.sector):
            break
    return composition


def _display(grey: np.ndarray, site: Site) -> np.ndarray:
    """The site's grey map: plain grey, or grey times a single-hue tint (RGB)."""
    if not site.coloured:
        return grey
    tint = np.asarray(TINTS[site.colour_map], np.float32)
    return (grey[:, :, None].astype(np.float32) * tint + 0.5).astype(np.uint8)


def _caliper_ends(view: View) -> np.ndarray:
    """Where a sonographer would measure: the BPD across a head, else the structure's long axis."""
    a, b = view.size_px
    if b > 0:
        return view.frame.to_image(np.zeros(2), np.array([-b, b]))
    return view.frame.to_image(np.array([-0.4 * a, 0.4 * a]), np.zeros(2))


def acquire(
    composition: Composition,
    noise_rng: np.random.Generator,
    annotations: tuple[str, str] = ("", ""),
) -> RenderedImage:
    """Scan the drawn scene. `annotations` = (header, acquisition date-time) burned into the image."""
    view, canvas = composition.view, composition.canvas
    site, sector = view.site, view.site.sector
    grey = to_bmode(canvas.echo, canvas.absorption, sector, view.depth_mm, view.settings, noise_rng)
    mask = np.where(sector_maps(sector).mask, canvas.lesion, 0).astype(np.uint8)
    settings = view.settings
    pixels = _display(grey, site)
    colour = site.text_colour if pixels.ndim == 3 else site.text_colour[0]
    burn_in(
        pixels,
        sector,
        view.depth_mm,
        annotations[0],
        annotations[1],
        f"{site.probe_label} {site.frequency_mhz:.1f}MHz D{view.depth_mm / 10:.0f}cm"
        f"|Gn {50 + settings.gain_db:.0f} DR {settings.dynamic_range_db:.0f}",
        site.layout,
        colour,
    )
    # Only sites that use calipers draw from the noise stream for them, so the default
    # site's images stay byte-identical to earlier versions.
    if site.caliper_probability > 0 and noise_rng.random() < site.caliper_probability:
        calipers(pixels, _caliper_ends(view), colour)
    if site.orientation_marker:
        orientation_marker(pixels, sector, colour)
    return RenderedImage(pixels=pixels, mask=mask, geometry=composition.geometry, view=view, sector=sector)


def render_view(
    view: View,
    anatomy: PatientAnatomy,
    noise_rng: np.random.Generator,
    annotations: tuple[str, str] = ("", ""),
) -> RenderedImage:
    """Draw and scan one frame of a given view (e.g. one frame of a cine loop)."""
    return acquire(compose(view, anatomy), noise_rng, annotations)


def cine_views(view: View, frames: int, rng: np.random.Generator) -> list[View]:
    """Slight probe motion: a smooth random drift of a few pixels and a degree or two."""
    steps = rng.normal(0, 1, size=(frames, 3)) * np.array([1.2, 1.2, 0.006])
    drift = np.cumsum(steps, axis=0)
    drift -= drift[frames // 2]
    return [view.moved(float(dx), float(dy), float(dr)) for dx, dy, dr in drift]
