"""Fetal head phantoms: axial (transventricular, transthalamic, transcerebellar) and coronal planes.

Axial local frame: +u points to the forehead, v is left-right; the calvarium is
the ellipse with half-axes a = OFD/2 and b = BPD/2. Coronal local frame: +u
points to the vertex and the orbits lie below the cranium.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from app.synth import anatomy as dx
from app.synth.anatomy import PatientAnatomy
from app.synth.canvas import (
    BRAIN,
    CHOROID,
    FLUID,
    MEMBRANE,
    SOFT_TISSUE,
    THALAMUS,
    Canvas,
    DrawnGeometry,
    LocalFrame,
    ellipse_points,
    fill,
    fill_ellipse,
    mark_lesion,
    specular_stroke,
    stroke,
)

TRANSVENTRICULAR = "transventricular"
TRANSTHALAMIC = "transthalamic"
TRANSCEREBELLAR = "transcerebellar"
CORONAL = "coronal"
AXIAL_PLANES = (TRANSVENTRICULAR, TRANSTHALAMIC, TRANSCEREBELLAR)

_LEMON_CENTRE = 0.95  # radians from the forehead: the frontal bones at the coronal sutures
_LEMON_WIDTH = 0.3


def _wrapped(angle: np.ndarray | float) -> np.ndarray:
    return np.abs((np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi)


def skull_outline(a: float, b: float, lemon_depth: float, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Local (u, v) of the calvarium; a lemon-shaped skull is dented at both frontal bones."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    dent = np.exp(-0.5 * (_wrapped(t - _LEMON_CENTRE) / _LEMON_WIDTH) ** 2)
    dent += np.exp(-0.5 * (_wrapped(t + _LEMON_CENTRE) / _LEMON_WIDTH) ** 2)
    scale = 1.0 - lemon_depth * dent
    return np.stack([a * np.cos(t) * scale, b * np.sin(t) * scale], axis=1), t


def _falx(canvas: Canvas, frame: LocalFrame, a: float, b: float, start: float, stop: float) -> None:
    u = np.linspace(start * a, stop * a, 12)
    stroke(canvas.echo, frame.to_image(u, np.zeros_like(u)), MEMBRANE * 0.9, max(2, round(0.018 * b)))


def _cavum(canvas: Canvas, frame: LocalFrame, a: float, b: float, rng: np.random.Generator) -> None:
    front = 0.42 + rng.uniform(-0.03, 0.03)
    u = np.array([0.2, front, front, 0.2]) * a
    v = np.array([-1, -1, 1, 1]) * b * rng.uniform(0.05, 0.07)
    pts = frame.to_image(u, v)
    fill(canvas.echo, pts, FLUID)
    stroke(canvas.echo, pts, MEMBRANE * 0.7, 1, closed=True)


def _sylvian(canvas: Canvas, frame: LocalFrame, a: float, b: float) -> None:
    u = np.linspace(-0.2, 0.25, 8) * a
    for side in (-1, 1):
        v = side * b * (0.62 - 0.1 * np.sin(np.linspace(0, np.pi, 8)))
        stroke(canvas.echo, frame.to_image(u, v), 0.28, 2)


def _ventricles(
    canvas: Canvas, frame: LocalFrame, a: float, b: float, scale: float, enlarged_is_lesion: bool = False
) -> None:
    """Lateral ventricles; with Chiari II they are dilated (ventriculomegaly), a finding to mark."""
    for side in (-1, 1):
        body = fill_ellipse(
            canvas, frame, -0.25 * a, side * 0.3 * b, 0.32 * a, 0.075 * b * scale, FLUID, 0.1 * side
        )
        if enlarged_is_lesion:
            mark_lesion(canvas, body, dilate=2)
        fill_ellipse(canvas, frame, -0.36 * a, side * 0.3 * b, 0.16 * a, 0.06 * b * scale, CHOROID)
        fill_ellipse(canvas, frame, 0.45 * a, side * 0.11 * b, 0.1 * a, 0.04 * b * scale, FLUID, -0.3 * side)


def _thalami(canvas: Canvas, frame: LocalFrame, a: float, b: float, size: float = 1.0) -> None:
    for side in (-1, 1):
        fill_ellipse(canvas, frame, -0.02 * a, side * 0.1 * b, 0.17 * a * size, 0.09 * b * size, THALAMUS)
    u = np.linspace(-0.15, 0.12, 6) * a
    stroke(canvas.echo, frame.to_image(u, np.zeros_like(u)), FLUID, 1)


def _cerebellum(canvas: Canvas, frame: LocalFrame, a: float, b: float) -> None:
    for side in (-1, 1):
        fill_ellipse(canvas, frame, -0.56 * a, side * 0.14 * b, 0.13 * a, 0.15 * b, 0.2)
    fill_ellipse(canvas, frame, -0.58 * a, 0.0, 0.09 * a, 0.06 * b, 0.42)
    fill_ellipse(canvas, frame, -0.81 * a, 0.0, 0.07 * a, 0.22 * b, FLUID)


def _banana(canvas: Canvas, frame: LocalFrame, a: float, b: float, strength: float = 1.0) -> None:
    """Cerebellum pulled into the foramen magnum: a crescent with the cisterna magna obliterated.

    `strength` varies how tightly it is curled and how thick it is: the degree of hindbrain
    herniation differs from fetus to fetus.
    """
    t = np.linspace(0.55 * np.pi, 1.45 * np.pi, 20)
    u, v = -0.5 * a + 0.2 * a * strength * np.cos(t), 0.3 * b * np.sin(t)
    pts = frame.to_image(u, v)
    thickness = max(5, round(0.13 * b * (0.7 + 0.3 * strength)))
    stroke(canvas.echo, pts, 0.38, thickness)
    stroke(canvas.lesion, pts, 255, thickness + 10)


def _lemon_mask(canvas: Canvas, frame: LocalFrame, a: float, b: float, depth: float) -> None:
    for centre in (_LEMON_CENTRE, -_LEMON_CENTRE):
        t = np.linspace(centre - 1.7 * _LEMON_WIDTH, centre + 1.7 * _LEMON_WIDTH, 16)
        dent = np.exp(-0.5 * ((t - centre) / _LEMON_WIDTH) ** 2)
        inner = 1.0 - depth * dent - 0.08
        outer_u, outer_v = 1.07 * a * np.cos(t), 1.07 * b * np.sin(t)
        inner_u, inner_v = inner * a * np.cos(t), inner * b * np.sin(t)
        pts = frame.to_image(
            np.concatenate([outer_u, inner_u[::-1]]), np.concatenate([outer_v, inner_v[::-1]])
        )
        mark_lesion(canvas, pts, dilate=2)


def _monoventricle(canvas: Canvas, frame: LocalFrame, a: float, b: float, size: float, coronal: bool) -> None:
    """Alobar holoprosencephaly: one horseshoe ventricle wrapped around fused thalami."""
    if coronal:
        vent = fill_ellipse(canvas, frame, 0.18 * a, 0.0, 0.5 * a * size, 0.66 * b * size, FLUID)
        thal = fill_ellipse(canvas, frame, -0.28 * a, 0.0, 0.24 * a, 0.38 * b, THALAMUS)
    else:
        vent = fill_ellipse(canvas, frame, 0.12 * a, 0.0, 0.52 * a * size, 0.62 * b * size, FLUID)
        thal = fill_ellipse(canvas, frame, -0.3 * a, 0.0, 0.22 * a, 0.32 * b, THALAMUS)
    mark_lesion(canvas, vent, dilate=2)
    mark_lesion(canvas, thal, dilate=2)


def _semilobar_back(canvas: Canvas, frame: LocalFrame, a: float, b: float) -> None:
    """Semilobar HPE: the back of the brain is divided: a posterior falx and two occipital horns."""
    _falx(canvas, frame, a, b, -0.92, -0.45)
    for side in (-1, 1):
        fill_ellipse(canvas, frame, -0.58 * a, side * 0.22 * b, 0.16 * a, 0.07 * b, FLUID, 0.2 * side)


def _fused_frontal_horns(
    canvas: Canvas, frame: LocalFrame, a: float, b: float, size: float, coronal: bool
) -> None:
    """Lobar HPE: one box-shaped frontal horn across the midline, where the cavum should be."""
    if coronal:
        horn = fill_ellipse(canvas, frame, 0.1 * a, 0.0, 0.12 * a * size, 0.3 * b * size, FLUID)
    else:
        horn = fill_ellipse(canvas, frame, 0.4 * a, 0.0, 0.14 * a * size, 0.2 * b * size, FLUID)
    mark_lesion(canvas, horn, dilate=2)


def _outward_normal(a: float, b: float, u: float, v: float) -> np.ndarray:
    n = np.array([u / a**2, v / b**2])
    return n / np.hypot(*n)


def _encephalocele(
    canvas: Canvas,
    frame: LocalFrame,
    a: float,
    b: float,
    outline: np.ndarray,
    t: np.ndarray,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Open the calvarium and hang a sac outside the defect; returns skull presence per point and the sac."""
    centre = anatomy.defect_angle + rng.normal(0, 0.04)
    present = _wrapped(t - centre) > anatomy.defect_half_width
    gu, gv = a * np.cos(centre), b * np.sin(centre)
    normal = _outward_normal(a, b, gu, gv)
    radius = anatomy.sac_size * b * rng.uniform(0.92, 1.08)
    cu, cv = np.array([gu, gv]) + normal * radius * 0.8
    su, sv = ellipse_points(cu, cv, radius, radius * rng.uniform(0.8, 1.05), np.arctan2(normal[1], normal[0]))
    gap = outline[~present] * 0.9
    hull_local = np.vstack([gap, np.stack([su, sv], axis=1)])
    hull = frame.to_image(hull_local[:, 0], hull_local[:, 1])
    hull = cv2.convexHull(hull.astype(np.float32)).reshape(-1, 2).astype(float)
    content = FLUID if anatomy.sac_cystic else BRAIN
    fill(canvas.echo, hull, content)
    if not anatomy.sac_cystic:
        for _ in range(4):
            k = rng.uniform(0.3, 0.8)
            u = np.linspace(gu * 0.95, cu + normal[0] * radius * k, 6)
            v = np.linspace(gv * 0.95, cv + normal[1] * radius * k, 6) + rng.normal(0, 0.15 * radius, 6)
            stroke(canvas.echo, frame.to_image(u, v), 0.3, 2)
    outside = (su / a) ** 2 + (sv / b) ** 2 > 1.02
    wall = frame.to_image(su, sv)
    for i in range(len(su)):
        j = (i + 1) % len(su)
        if outside[i] and outside[j]:
            stroke(canvas.echo, wall[[i, j]], MEMBRANE, 2)
    mark_lesion(canvas, hull, dilate=3)
    return present, hull


def draw_axial_head(
    canvas: Canvas,
    frame: LocalFrame,
    a: float,
    b: float,
    plane: str,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
    apex: tuple[float, float],
) -> DrawnGeometry:
    """Draw an axial section of the head in `plane`, with the patient's lesion where it shows."""
    if anatomy.diagnosis == dx.ANENCEPHALY:
        return _anencephaly_axial(canvas, frame, a, b, anatomy, rng, apex)
    lemon = anatomy.lemon_depth * rng.uniform(0.9, 1.1)
    outline, t = skull_outline(a, b, lemon)
    head = frame.to_image(outline[:, 0], outline[:, 1])
    fill(canvas.echo, frame.to_image(outline[:, 0] * 1.06, outline[:, 1] * 1.06), SOFT_TISSUE)
    fill(canvas.echo, frame.to_image(outline[:, 0] * 0.975, outline[:, 1] * 0.975), BRAIN)
    present = np.ones(len(t), bool)
    extent = [frame.to_image(outline[:, 0] * 1.06, outline[:, 1] * 1.06)]
    hpe = anatomy.diagnosis == dx.HOLOPROSENCEPHALY
    if hpe and anatomy.subtype != "lobar":
        _monoventricle(canvas, frame, a, b, anatomy.monoventricle, coronal=False)
        if anatomy.subtype == "semilobar":
            _semilobar_back(canvas, frame, a, b)
    else:
        _sylvian(canvas, frame, a, b)
        # Lobar HPE: the hemispheres are divided behind but the frontal lobes are fused, so the
        # falx stops short of the forehead and there is no cavum septi pellucidi.
        _falx(canvas, frame, a, b, -0.92, 0.2 if hpe else 0.92)
        if not hpe:
            _cavum(canvas, frame, a, b, rng)
        chiari = anatomy.diagnosis == dx.RACHISCHISIS
        if plane == TRANSVENTRICULAR:
            scale = anatomy.ventricle_scale if chiari else 1.0
            _ventricles(canvas, frame, a, b, scale, enlarged_is_lesion=chiari and anatomy.ventriculomegaly)
        elif plane == TRANSTHALAMIC:
            _thalami(canvas, frame, a, b)
        elif plane == TRANSCEREBELLAR:
            _thalami(canvas, frame, a, b, size=0.8)
            if chiari and anatomy.banana:
                _banana(canvas, frame, a, b, anatomy.banana_strength)
            else:
                _cerebellum(canvas, frame, a, b)
        if hpe:
            _fused_frontal_horns(canvas, frame, a, b, anatomy.monoventricle, coronal=False)
    if anatomy.diagnosis == dx.ENCEPHALOCELE:
        present, sac = _encephalocele(canvas, frame, a, b, outline, t, anatomy, rng)
        extent.append(sac)
    if anatomy.diagnosis == dx.RACHISCHISIS and lemon > 0:
        _lemon_mask(canvas, frame, a, b, lemon)
    specular_stroke(
        canvas,
        head,
        present,
        apex,
        anatomy.bone_echo,
        anatomy.bone_absorption,
        max(2, round(0.05 * b)),
    )
    return DrawnGeometry(skull_contour=head, skull_present=present, extent=extent)


def _irregular_blob(
    cu: float, cv: float, radius_u: float, radius_v: float, rng: np.random.Generator, n: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 7):
        r += rng.uniform(0.03, 0.09) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    return cu + radius_u * r * np.cos(t), cv + radius_v * r * np.sin(t)


def _disorganised_tissue(
    canvas: Canvas,
    frame: LocalFrame,
    cu: float,
    cv: float,
    radius_u: float,
    radius_v: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Exposed, degenerated brain (area cerebrovasculosa): bumpy, heterogeneous, no bone."""
    u, v = _irregular_blob(cu, cv, radius_u, radius_v, rng)
    pts = frame.to_image(u, v)
    fill(canvas.echo, pts, 0.13)
    for _ in range(14):
        ou = cu + rng.uniform(-0.6, 0.6) * radius_u
        ov = cv + rng.uniform(-0.6, 0.6) * radius_v
        size = rng.uniform(0.08, 0.2) * min(radius_u, radius_v)
        echo = float(rng.choice([FLUID, 0.3, 0.45]))
        fill_ellipse(canvas, frame, ou, ov, size, size * rng.uniform(0.5, 1.0), echo, rng.uniform(0, np.pi))
    stroke(canvas.echo, pts, 0.3, 2, closed=True)
    mark_lesion(canvas, pts, dilate=3)
    return pts


def _orbit(
    canvas: Canvas, frame: LocalFrame, cu: float, cv: float, radius: float, anatomy: PatientAnatomy
) -> np.ndarray:
    u, v = ellipse_points(cu, cv, radius, radius)
    pts = frame.to_image(u, v)
    fill(canvas.echo, pts, FLUID * 2)
    stroke(canvas.echo, pts, anatomy.bone_echo * 0.6, 2, closed=True)
    stroke(canvas.absorption, pts, anatomy.bone_absorption * 0.5, 2, closed=True)
    return pts


def _anencephaly_axial(
    canvas: Canvas,
    frame: LocalFrame,
    a: float,
    b: float,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
    apex: tuple[float, float],
) -> DrawnGeometry:
    """No calvarium: the section shows the orbits, the skull base and disorganised tissue behind."""
    size = anatomy.vault_remnant * rng.uniform(0.9, 1.1)
    outline, t = skull_outline(a, b, 0.0)
    intended = frame.to_image(outline[:, 0], outline[:, 1])
    fill_ellipse(canvas, frame, 0.55 * a, 0.0, 0.42 * a, 0.8 * b, SOFT_TISSUE)
    blob = _disorganised_tissue(canvas, frame, -0.15 * a, 0.0, size * a, size * b * 1.1, rng)
    base_v = np.linspace(-0.75, 0.75, 16) * b
    base_u = 0.45 * a - 0.25 * a * (base_v / b) ** 2
    base = frame.to_image(base_u, base_v)
    specular_stroke(
        canvas, base, np.ones(len(base), bool), apex, anatomy.bone_echo, anatomy.bone_absorption * 0.3, 3
    )
    orbits = [_orbit(canvas, frame, 0.82 * a, side * 0.34 * b, 0.17 * b, anatomy) for side in (-1, 1)]
    return DrawnGeometry(
        skull_contour=intended,
        skull_present=np.zeros(len(t), bool),
        extent=[blob, base, *orbits],
    )


def draw_coronal_head(
    canvas: Canvas,
    frame: LocalFrame,
    a: float,
    b: float,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
    apex: tuple[float, float],
) -> DrawnGeometry:
    """Draw a coronal section: cranium above, face and orbits below."""
    height = b * rng.uniform(0.9, 1.0)
    face = fill_ellipse(canvas, frame, -1.05 * height, 0.0, 0.42 * height, 0.78 * b, SOFT_TISSUE)
    hpe = anatomy.diagnosis == dx.HOLOPROSENCEPHALY
    if anatomy.diagnosis == dx.ANENCEPHALY:
        # Frog-eye look: bulging orbits with nothing above them but disorganised tissue.
        size = anatomy.vault_remnant * rng.uniform(0.9, 1.1)
        blob = _disorganised_tissue(
            canvas, frame, -0.45 * height, 0.0, size * height * 0.75, size * b * 1.1, rng
        )
        base_v = np.linspace(-0.8, 0.8, 16) * b
        base = frame.to_image(-0.8 * height + 0.12 * height * (base_v / b) ** 2, base_v)
        specular_stroke(
            canvas, base, np.ones(len(base), bool), apex, anatomy.bone_echo, anatomy.bone_absorption, 3
        )
        orbits = [_orbit(canvas, frame, -1.02 * height, s * 0.36 * b, 0.21 * b, anatomy) for s in (-1, 1)]
        outline, t = skull_outline(height, b, 0.0)
        return DrawnGeometry(
            skull_contour=frame.to_image(outline[:, 0], outline[:, 1]),
            skull_present=np.zeros(len(t), bool),
            extent=[blob, face, *orbits],
        )
    outline, t = skull_outline(height, b, 0.0)
    head = frame.to_image(outline[:, 0], outline[:, 1])
    fill(canvas.echo, frame.to_image(outline[:, 0] * 1.06, outline[:, 1] * 1.06), SOFT_TISSUE)
    fill(canvas.echo, frame.to_image(outline[:, 0] * 0.975, outline[:, 1] * 0.975), BRAIN)
    if hpe and anatomy.subtype != "lobar":
        _monoventricle(canvas, frame, height, b, anatomy.monoventricle, coronal=True)
    elif hpe:
        _falx(canvas, frame, height, b, 0.5, 0.95)  # divided above, fused frontal horns below
        _fused_frontal_horns(canvas, frame, height, b, anatomy.monoventricle, coronal=True)
    else:
        _falx(canvas, frame, height, b, 0.15, 0.95)
        for side in (-1, 1):
            fill_ellipse(
                canvas, frame, 0.08 * height, side * 0.15 * b, 0.16 * height, 0.045 * b, FLUID, 0.5 * side
            )
            u = np.linspace(-0.35, 0.05, 6) * height
            stroke(canvas.echo, frame.to_image(u, side * b * (0.62 + 0.05 * u / height)), 0.28, 2)
        fill_ellipse(canvas, frame, -0.12 * height, 0.0, 0.07 * height, 0.05 * b, FLUID)
    present = np.ones(len(t), bool)
    extent = [frame.to_image(outline[:, 0] * 1.06, outline[:, 1] * 1.06), face]
    if anatomy.diagnosis == dx.ENCEPHALOCELE:
        # Coronal sections through the defect show it high in the midline (occipital) or
        # high on one side (parietal).
        high = replace(anatomy, defect_angle=anatomy.coronal_defect_angle)
        present, sac = _encephalocele(canvas, frame, height, b, outline, t, high, rng)
        extent.append(sac)
    specular_stroke(
        canvas,
        head,
        present,
        apex,
        anatomy.bone_echo,
        anatomy.bone_absorption,
        max(2, round(0.05 * b)),
    )
    separation = (
        0.24 if hpe and anatomy.subtype != "lobar" else 0.36
    )  # hypotelorism accompanies holoprosencephaly
    orbits = [_orbit(canvas, frame, -1.08 * height, s * separation * b, 0.15 * b, anatomy) for s in (-1, 1)]
    return DrawnGeometry(skull_contour=head, skull_present=present, extent=[*extent, *orbits])
