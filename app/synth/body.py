"""Non-CNS fetal planes of an anomaly scan: abdomen, femur, four-chamber heart and face profile.

They are out of scope for the CNS classifier and exist so that its
out-of-distribution gate can be tested on the other views a real study holds.
They carry no lesion: every patient's body is drawn normal, whatever the CNS
diagnosis. Sizes follow Hadlock's abdominal circumference and femur length
(app/synth/hadlock.py) scaled by the patient's individual growth.

Local frames (u, v in pixels, see app/synth/canvas.LocalFrame):
  abdomen, four_chamber  axial sections: +u anterior (towards the cord / sternum),
                         +v towards the fetal left; the spine lies at -u.
  femur                  +u along the femur from the hip to the knee.
  face_profile           midsagittal: +u towards the face, +v caudal (towards the chin).
"""

from __future__ import annotations

import math

import numpy as np

from app.synth.anatomy import PatientAnatomy
from app.synth.canvas import (
    BRAIN,
    FLUID,
    MEMBRANE,
    SOFT_TISSUE,
    Canvas,
    DrawnGeometry,
    LocalFrame,
    ellipse_points,
    fill,
    fill_ellipse,
    specular_stroke,
    stroke,
)

ABDOMEN = "abdomen"
FEMUR = "femur"
FOUR_CHAMBER = "four_chamber"
FACE_PROFILE = "face_profile"
OTHER_PLANES: tuple[str, ...] = (ABDOMEN, FEMUR, FOUR_CHAMBER, FACE_PROFILE)

LIVER = SOFT_TISSUE * 1.15
LUNG = 0.3
MYOCARDIUM = 0.12
# Thoracic circumference is about 0.9 of the abdominal circumference through pregnancy
# (Chitkara et al., Am J Obstet Gynecol 1987;156:1069-1074); the heart fills about a
# third of the thoracic area in the four-chamber view (cardiothoracic area ratio,
# Paladini et al., Arch Dis Child 1990;65:20-23).
THORAX_TO_AC = 0.9
CARDIOTHORACIC_AREA = 1 / 3


def structure_mm(plane: str, anatomy: PatientAnatomy) -> float:
    """The size that sets the zoom: the diameter of the section, the femur length, or the OFD."""
    if plane == ABDOMEN:
        return anatomy.ac_mm / math.pi
    if plane == FOUR_CHAMBER:
        return THORAX_TO_AC * anatomy.ac_mm / math.pi
    if plane == FEMUR:
        return anatomy.fl_mm
    if plane == FACE_PROFILE:
        return anatomy.ofd_mm
    raise ValueError(f"unknown non-CNS plane {plane!r}; expected one of {', '.join(OTHER_PLANES)}")


def draw_other_view(
    canvas: Canvas,
    plane: str,
    frame: LocalFrame,
    size: float,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
    apex: tuple[float, float],
) -> DrawnGeometry:
    """Draw `plane`; `size` is `structure_mm` in pixels."""
    if plane == ABDOMEN:
        return _abdomen(canvas, frame, size / 2, anatomy, rng, apex)
    if plane == FOUR_CHAMBER:
        return _four_chamber(canvas, frame, size / 2, anatomy, rng, apex)
    if plane == FEMUR:
        return _femur(canvas, frame, size, anatomy, rng)
    if plane == FACE_PROFILE:
        return _face_profile(canvas, frame, size / 2, anatomy, rng, apex)
    raise ValueError(f"unknown non-CNS plane {plane!r}")


def _vertebra(canvas: Canvas, frame: LocalFrame, cu: float, r: float, anatomy: PatientAnatomy) -> None:
    """Axial vertebra: the centrum and two posterior laminae converging behind the canal."""
    bone, absorb = anatomy.bone_echo, anatomy.bone_absorption
    fill_ellipse(canvas, frame, cu, 0.0, 0.07 * r, 0.08 * r, bone * 0.9, 0.0, absorb)
    fill_ellipse(canvas, frame, cu - 0.07 * r, 0.0, 0.035 * r, 0.035 * r, FLUID * 2)  # spinal canal
    for side in (-1, 1):
        fill_ellipse(
            canvas, frame, cu - 0.13 * r, side * 0.07 * r, 0.06 * r, 0.025 * r, bone, side * 0.9, absorb
        )


def _ribs(
    canvas: Canvas,
    frame: LocalFrame,
    ru: float,
    rv: float,
    start: float,
    stop: float,
    anatomy: PatientAnatomy,
    apex: tuple[float, float],
) -> None:
    """A rib along each lateral wall between wall angles `start`…`stop` (0 anterior, π posterior)."""
    t = np.linspace(start, stop, 16)
    for side in (-1, 1):
        pts = frame.to_image(0.9 * ru * np.cos(t), side * 0.9 * rv * np.sin(t))
        present = np.ones(len(pts), bool)
        present[-1] = False  # an open arc, not a closed loop
        specular_stroke(
            canvas, pts, present, apex, anatomy.bone_echo, anatomy.bone_absorption, max(2, round(0.035 * ru))
        )


def _abdomen(
    canvas: Canvas,
    frame: LocalFrame,
    r: float,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
    apex: tuple[float, float],
) -> DrawnGeometry:
    """Axial section at the abdominal circumference: stomach bubble, umbilical vein, spine."""
    ru, rv = r * 1.04, r * 0.96  # circumference ≈ 2πr, the AC
    outline = fill_ellipse(canvas, frame, 0.0, 0.0, ru, rv, LIVER)
    stroke(canvas.echo, outline, MEMBRANE * 0.8, 2, closed=True)
    # Bowel below the liver on the right of the picture: slightly brighter, mottled.
    for _ in range(4):
        fill_ellipse(
            canvas,
            frame,
            rng.uniform(-0.2, 0.5) * r,
            rng.uniform(-0.6, -0.2) * r,
            rng.uniform(0.08, 0.14) * r,
            rng.uniform(0.06, 0.1) * r,
            SOFT_TISSUE * rng.uniform(1.2, 1.6),
            rng.uniform(0, np.pi),
        )
    stomach_r = (rng.uniform(0.2, 0.27) * r, rng.uniform(0.13, 0.18) * r)
    stomach = fill_ellipse(
        canvas, frame, rng.uniform(0.0, 0.2) * r, 0.42 * r, *stomach_r, FLUID, rng.uniform(0.2, 0.7)
    )
    # Umbilical vein: enters anteriorly and curves into the liver towards the portal sinus.
    s = np.linspace(0.0, 1.0, 12)
    vein_u = (0.98 - 0.95 * s) * r
    vein_v = (-0.05 - 0.2 * s**2) * r
    stroke(canvas.echo, frame.to_image(vein_u, vein_v), FLUID * 1.5, max(3, round(0.07 * r)))
    fill_ellipse(canvas, frame, -0.5 * r, 0.12 * r, 0.05 * r, 0.05 * r, FLUID)  # aorta
    fill_ellipse(canvas, frame, -0.45 * r, -0.15 * r, 0.06 * r, 0.05 * r, FLUID * 1.5)  # inferior vena cava
    _vertebra(canvas, frame, -0.72 * r, r, anatomy)
    _ribs(canvas, frame, ru, rv, 0.62 * np.pi, 0.78 * np.pi, anatomy, apex)
    geometry = DrawnGeometry(extent=[outline])
    geometry.landmarks.update(body_contour=outline, stomach=stomach)
    return geometry


def _four_chamber(
    canvas: Canvas,
    frame: LocalFrame,
    r: float,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
    apex: tuple[float, float],
) -> DrawnGeometry:
    """Axial thorax: lungs, a rib on each side, spine, aorta and a four-chamber heart with a crux."""
    outline = fill_ellipse(canvas, frame, 0.0, 0.0, r, r * 0.97, LUNG)
    stroke(canvas.echo, outline, MEMBRANE * 0.8, 2, closed=True)
    fill_ellipse(canvas, frame, -0.55 * r, 0.14 * r, 0.07 * r, 0.07 * r, FLUID)  # descending aorta
    _vertebra(canvas, frame, -0.78 * r, r, anatomy)
    _ribs(canvas, frame, r, r * 0.97, 0.25 * np.pi, 0.85 * np.pi, anatomy, apex)
    # Heart: long axis from the base (posterior right) to the apex (anterior left), about 45°.
    area = CARDIOTHORACIC_AREA * r * r * 0.97 * rng.uniform(0.9, 1.05)
    hl = math.sqrt(area * 1.3)  # half length along the long axis
    hw = area / hl  # half width
    axis = math.radians(45 + rng.uniform(-8, 8))
    hf = LocalFrame(
        *frame.to_image(0.18 * r, 0.1 * r), frame.angle + (-axis if frame.flip else axis), frame.flip
    )
    heart = fill_ellipse(canvas, hf, 0.0, 0.0, hl, hw, MYOCARDIUM)
    stroke(canvas.echo, heart, MEMBRANE * 0.8, 2, closed=True)  # pericardium
    septum = max(2.0, 0.07 * hw)
    valves = -0.05 * hl
    chambers = []
    # Ventricles towards the apex (+p), atria towards the base; right heart anterior (−q).
    for pc, rp in ((0.42 * hl, 0.37 * hl), (-0.45 * hl, 0.33 * hl)):
        for side in (-1, 1):
            qc = side * 0.45 * hw
            rq = 0.45 * hw - septum
            fill_ellipse(canvas, hf, pc, qc, rp, rq, FLUID)
            chambers.append(hf.to_image(np.array(pc), np.array(qc)))
    # The crux: interventricular and interatrial septum meeting the atrioventricular valves.
    crux_echo = 0.3
    long_axis = hf.to_image(np.array([-0.95 * hl, 0.95 * hl]), np.zeros(2))
    av_plane = hf.to_image(np.full(2, valves), np.array([-0.97 * hw, 0.97 * hw]))
    stroke(canvas.echo, long_axis, crux_echo, round(2 * septum))
    stroke(canvas.echo, av_plane, crux_echo, round(1.6 * septum))
    geometry = DrawnGeometry(extent=[outline])
    geometry.landmarks.update(
        body_contour=outline,
        heart=heart,
        septum=long_axis,
        av_plane=av_plane,
        crux=hf.to_image(np.array(valves), np.array(0.0)),
        chambers=np.array(chambers),
    )
    return geometry


def _femur(
    canvas: Canvas, frame: LocalFrame, length: float, anatomy: PatientAnatomy, rng: np.random.Generator
) -> DrawnGeometry:
    """Longitudinal thigh: the ossified diaphysis, a bright bar that casts a shadow, cartilage at its ends."""
    half = length / 2
    fill_ellipse(canvas, frame, -0.62 * length, 0.05 * length, 0.32 * length, 0.3 * length, SOFT_TISSUE)
    thigh = fill_ellipse(canvas, frame, 0.0, 0.0, 0.66 * length, 0.2 * length, SOFT_TISSUE * 1.1)
    knee = rng.uniform(0.7, 1.5) * rng.choice([-1, 1])
    shin_u = 0.62 * length + 0.35 * length * math.cos(knee)
    shin_v = 0.35 * length * math.sin(knee)
    fill_ellipse(canvas, frame, shin_u, shin_v, 0.42 * length, 0.13 * length, SOFT_TISSUE, knee)
    # The diaphysis is ossified from 8 weeks: bright and shadowing even in early scans.
    bone = 0.9 + 0.6 * anatomy.ossification
    absorb = 0.06 + 0.06 * anatomy.ossification
    s = np.linspace(0.0, 1.0, 24)
    u = (s - 0.5) * length
    centre = rng.uniform(0.01, 0.025) * length * (1 - (2 * s - 1) ** 2)  # slight anterior bowing
    width = max(1.5, 0.035 * length) * (1 + 0.5 * np.abs(2 * s - 1) ** 6)  # flared metaphyses
    shaft = frame.to_image(
        np.concatenate([u, u[::-1]]), np.concatenate([centre - width, (centre + width)[::-1]])
    )
    fill(canvas.echo, shaft, bone)
    fill(canvas.absorption, shaft, absorb)
    for end in (-1, 1):  # cartilaginous epiphyses: hypoechoic caps
        fill_ellipse(
            canvas, frame, end * (half + 0.075 * length), 0.0, 0.07 * length, 0.09 * length, FLUID * 3
        )
    geometry = DrawnGeometry(extent=[shaft, thigh])
    geometry.landmarks.update(femur_axis=frame.to_image(np.array([-half, half]), np.zeros(2)), femur=shaft)
    return geometry


def _chaikin(points: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Corner-cutting smoothing of an open polyline."""
    for _ in range(rounds):
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2] = 0.75 * a + 0.25 * b
        cut[1::2] = 0.25 * a + 0.75 * b
        points = np.vstack([points[:1], cut, points[-1:]])
    return points


# Midsagittal skin line from the forehead to the throat, in units of OFD/2 (u forward, v caudal).
_PROFILE = np.array(
    [
        (0.50, -0.80),
        (0.80, -0.60),
        (0.97, -0.33),
        (1.03, -0.08),
        (1.01, 0.06),
        (0.96, 0.14),  # nasion
        (1.02, 0.23),
        (1.10, 0.33),  # nose tip
        (1.04, 0.39),
        (0.98, 0.42),  # subnasale
        (1.03, 0.47),
        (1.03, 0.52),  # upper lip
        (0.98, 0.56),  # mouth
        (1.01, 0.60),
        (1.00, 0.65),  # lower lip
        (0.93, 0.71),  # labiomental fold
        (0.97, 0.80),
        (0.93, 0.89),  # chin
        (0.78, 0.96),
        (0.58, 0.99),
    ]
)


def _face_profile(
    canvas: Canvas,
    frame: LocalFrame,
    a: float,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
    apex: tuple[float, float],
) -> DrawnGeometry:
    """Midsagittal face: forehead, nasal bone, nose, lips and chin against the amniotic fluid."""
    jitter = np.ones_like(_PROFILE)
    jitter[:, 0] += rng.normal(0, 0.01, len(_PROFILE))
    profile_local = _chaikin(_PROFILE * jitter * a)
    fill_ellipse(canvas, frame, 0.05 * a, 0.95 * a, 0.5 * a, 0.4 * a, SOFT_TISSUE * 0.9)  # neck
    fill_ellipse(canvas, frame, -0.25 * a, 1.75 * a, 0.75 * a, 0.6 * a, SOFT_TISSUE * 0.9, 0.3)  # chest
    cranium = fill_ellipse(canvas, frame, -0.05 * a, -0.1 * a, 1.02 * a, 0.9 * a, SOFT_TISSUE)
    face_local = np.vstack([profile_local, [(0.2 * a, 1.0 * a), (-0.1 * a, 0.4 * a), (0.2 * a, -0.5 * a)]])
    fill(canvas.echo, frame.to_image(face_local[:, 0], face_local[:, 1]), SOFT_TISSUE)
    bu, bv = ellipse_points(-0.07 * a, -0.12 * a, 0.93 * a, 0.8 * a, n=96)
    fill(canvas.echo, frame.to_image(bu, bv), BRAIN)
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    # Open below, where the face and neck join, and at the anterior fontanelle; the midsagittal
    # cut runs along the metopic and sagittal sutures, so the vault shadows less than in axial views.
    skull_present = ~((t > 0.3 * np.pi) & (t < 0.9 * np.pi)) & ~((t > 1.55 * np.pi) & (t < 1.7 * np.pi))
    specular_stroke(
        canvas,
        frame.to_image(bu, bv),
        skull_present,
        apex,
        anatomy.bone_echo,
        anatomy.bone_absorption * 0.3,
        max(2, round(0.04 * a)),
    )
    bone, absorb = anatomy.bone_echo * 0.85, anatomy.bone_absorption
    thickness = max(2, round(0.025 * a))
    for seg in (
        [(0.93, 0.14), (0.99, 0.27)],  # nasal bone
        [(0.92, 0.4), (0.62, 0.43)],  # maxilla and palate
        [(0.9, 0.63), (0.89, 0.8), (0.8, 0.87), (0.55, 0.86)],  # mandible
    ):
        pts = np.array(seg) * a
        line = frame.to_image(pts[:, 0], pts[:, 1])
        stroke(canvas.echo, line, bone, thickness)
        stroke(canvas.absorption, line, absorb, thickness)
    profile = frame.to_image(profile_local[:, 0], profile_local[:, 1])
    stroke(canvas.echo, profile, MEMBRANE * 0.7, 2)
    geometry = DrawnGeometry(extent=[profile, cranium])
    geometry.landmarks.update(profile=profile)
    return geometry
