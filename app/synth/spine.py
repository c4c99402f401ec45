"""Sagittal fetal spine phantom.

Local frame: +u runs from the neck to the sacrum, +v points dorsally (towards
the skin of the back). Vertebral bodies and posterior elements are two rows of
ossification centres that converge at the sacrum.
"""

from __future__ import annotations

import numpy as np

from app.synth import anatomy as dx
from app.synth.anatomy import PatientAnatomy
from app.synth.canvas import (
    BRAIN,
    FLUID,
    MEMBRANE,
    SOFT_TISSUE,
    Canvas,
    DrawnGeometry,
    LocalFrame,
    fill,
    fill_ellipse,
    mark_lesion,
    stroke,
)

SAGITTAL_SPINE = "sagittal_spine"


def draw_sagittal_spine(
    canvas: Canvas,
    frame: LocalFrame,
    length: float,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
) -> DrawnGeometry:
    big_l = length
    s = np.linspace(0.0, 1.0, 90)
    u = (s - 0.5) * big_l
    bend = rng.uniform(-1, 1) * 0.05 * big_l
    centre = bend * (1 - (2 * s - 1) ** 2)
    taper = 1 - 0.55 * np.clip((s - 0.7) / 0.3, 0, 1)
    canal = 0.032 * big_l * taper
    body = 0.045 * big_l * taper
    skin = centre + canal + 0.07 * big_l * taper

    # Trunk: rounded at the buttocks; at the other end the neck leads to the head.
    s_trunk = np.linspace(-0.12, 1.0, 60)
    u_trunk = (s_trunk - 0.5) * big_l
    c_trunk = np.interp(s_trunk, s, centre)
    back = c_trunk + np.interp(s_trunk, s, canal + 0.07 * big_l * taper)
    belly = c_trunk - 0.3 * big_l * (0.65 + 0.35 * np.sin(np.pi * np.clip(s_trunk, 0, 1)))
    bottom_u = np.linspace(u_trunk[-1], u_trunk[-1] + 0.08 * big_l, 8)
    bottom_v = np.linspace(back[-1], belly[-1], 8)
    trunk = frame.to_image(
        np.concatenate([u_trunk, bottom_u, u_trunk[::-1]]),
        np.concatenate([back, bottom_v, belly[::-1]]),
    )
    fill(canvas.echo, trunk, SOFT_TISSUE * 0.9)
    _head_end(canvas, frame, big_l, float(centre[0]), anatomy)
    for _ in range(3):  # abdominal organs: liver, bowel, bladder or stomach
        su = rng.uniform(0.2, 0.9)
        cu = (su - 0.5) * big_l
        cv = float(np.interp(su, s, centre)) - rng.uniform(0.12, 0.2) * big_l
        echo = float(rng.choice([FLUID * 1.5, 0.16, 0.22]))
        fill_ellipse(
            canvas, frame, cu, cv, rng.uniform(0.06, 0.12) * big_l, rng.uniform(0.04, 0.07) * big_l, echo
        )

    canal_poly = frame.to_image(
        np.concatenate([u, u[::-1]]), np.concatenate([centre - canal, (centre + canal)[::-1]])
    )
    fill(canvas.echo, canal_poly, FLUID * 1.5)
    cord = s < 0.78
    stroke(canvas.echo, frame.to_image(u[cord], centre[cord]), 0.13, max(2, round(0.02 * big_l)))

    open_spine = anatomy.diagnosis == dx.RACHISCHISIS
    defect_at = anatomy.spine_defect_at + rng.normal(0, 0.01)
    half = anatomy.spine_defect_half
    count = int(rng.integers(22, 28))
    positions = np.linspace(0.02, 0.97, count)
    spacing = big_l * 0.95 / count
    bone, absorb = anatomy.bone_echo, anatomy.bone_absorption
    posterior_offset = 0.012 * big_l
    for sk in positions:
        uk = (sk - 0.5) * big_l
        ck, wk, bk = (float(np.interp(sk, s, arr)) for arr in (centre, canal, body))
        fill_ellipse(canvas, frame, uk, ck - wk - bk * 0.8, 0.36 * spacing, bk * 0.7, bone * 0.8, 0.0, absorb)
        in_defect = open_spine and abs(sk - defect_at) < half
        if in_defect:
            # Splayed laminae: displaced outwards and tilted, fainter than intact arches.
            fill_ellipse(
                canvas,
                frame,
                uk,
                ck + wk + 3 * posterior_offset,
                0.3 * spacing,
                0.35 * posterior_offset,
                bone * 0.5,
                rng.uniform(0.5, 0.9) * rng.choice([-1, 1]),
                absorb * 0.5,
            )
            continue
        fill_ellipse(
            canvas, frame, uk, ck + wk + posterior_offset, 0.3 * spacing, posterior_offset, bone, 0.0, absorb
        )

    intact_skin = ~(open_spine & (np.abs(s - defect_at) < half))
    for run in _runs(intact_skin):
        stroke(canvas.echo, frame.to_image(u[run], skin[run]), MEMBRANE, 2)

    extent = [frame.to_image(u, centre), frame.to_image(u, skin)]
    if open_spine:
        sac = _open_defect(canvas, frame, s, u, centre, canal, skin, defect_at, half, big_l, anatomy, rng)
        extent.append(sac)
    return DrawnGeometry(
        spine_line=frame.to_image(u, centre),
        posterior_line=frame.to_image(u, centre + canal + posterior_offset),
        extent=extent,
    )


def _head_end(
    canvas: Canvas, frame: LocalFrame, big_l: float, neck_v: float, anatomy: PatientAnatomy
) -> None:
    """The back of the head beyond the cervical spine, usually cut by the edge of the sector."""
    radius = 0.24 * big_l
    cu, cv = -0.62 * big_l - radius, neck_v - 0.08 * big_l
    neck_u = -0.56 * big_l
    fill_ellipse(canvas, frame, neck_u, neck_v - 0.1 * big_l, 0.1 * big_l, 0.16 * big_l, SOFT_TISSUE * 0.9)
    outline = fill_ellipse(canvas, frame, cu, cv, radius, radius * 0.85, BRAIN)
    thickness = max(2, round(0.012 * big_l))
    stroke(canvas.echo, outline, anatomy.bone_echo * 0.8, thickness, closed=True)
    stroke(canvas.absorption, outline, anatomy.bone_absorption, thickness, closed=True)


def _runs(flags: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the consecutive True stretches."""
    runs: list[np.ndarray] = []
    start = None
    for i, flag in enumerate([*flags.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start > 1:
                runs.append(np.arange(start, i))
            start = None
    return runs


def _open_defect(
    canvas: Canvas,
    frame: LocalFrame,
    s: np.ndarray,
    u: np.ndarray,
    centre: np.ndarray,
    canal: np.ndarray,
    skin: np.ndarray,
    defect_at: float,
    half: float,
    big_l: float,
    anatomy: PatientAnatomy,
    rng: np.random.Generator,
) -> np.ndarray:
    """Myelomeningocele sac bulging through the open arches; returns the lesion outline."""
    ud = (defect_at - 0.5) * big_l
    base = float(np.interp(defect_at, s, skin))
    floor = float(np.interp(defect_at, s, centre - canal))
    width = half * big_l * 1.15
    height = anatomy.sac_size * half * big_l * rng.uniform(0.9, 1.1)
    t = np.linspace(np.pi, 0.0, 24)
    dome_u, dome_v = ud + width * np.cos(t), base + height * np.sin(t)
    fill(canvas.echo, frame.to_image(dome_u, dome_v), FLUID)
    stroke(canvas.echo, frame.to_image(dome_u, dome_v), MEMBRANE * 0.9, 2)
    for _ in range(3):  # neural tissue strands reaching into the sac
        end = rng.uniform(-0.6, 0.6)
        su = np.linspace(ud + end * 0.3 * width, ud + end * width, 5)
        sv = np.linspace(floor + 0.5 * (base - floor), base + height * rng.uniform(0.5, 0.9), 5)
        stroke(canvas.echo, frame.to_image(su, sv), 0.3, 2)
    outline = frame.to_image(
        np.concatenate([dome_u, [ud + width, ud - width]]),
        np.concatenate([dome_v, [floor, floor]]),
    )
    mark_lesion(canvas, outline, dilate=3)
    return outline
