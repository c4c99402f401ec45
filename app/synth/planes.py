"""Which planes each diagnosis is imaged in, so that the lesion shows in every anomaly image."""

from __future__ import annotations

import numpy as np

from app.synth import anatomy as dx
from app.synth.head import CORONAL, TRANSCEREBELLAR, TRANSTHALAMIC, TRANSVENTRICULAR
from app.synth.spine import SAGITTAL_SPINE

PLANE_WEIGHTS: dict[str, dict[str, float]] = {
    dx.NORMAL: {
        TRANSVENTRICULAR: 1.0,
        TRANSTHALAMIC: 1.0,
        TRANSCEREBELLAR: 1.0,
        CORONAL: 1.0,
        SAGITTAL_SPINE: 1.0,
    },
    # Axial sections run through the orbits and the exposed tissue; coronal shows the frog eyes.
    dx.ANENCEPHALY: {TRANSVENTRICULAR: 0.25, TRANSTHALAMIC: 0.35, CORONAL: 0.4},
    # Mostly axial planes through the occipital defect, sometimes a posterior coronal one.
    dx.ENCEPHALOCELE: {TRANSVENTRICULAR: 0.27, TRANSTHALAMIC: 0.3, TRANSCEREBELLAR: 0.3, CORONAL: 0.13},
    dx.HOLOPROSENCEPHALY: {TRANSVENTRICULAR: 0.35, TRANSTHALAMIC: 0.35, CORONAL: 0.3},
    # Mostly the open spine itself, plus head views with lemon and banana signs.
    dx.RACHISCHISIS: {SAGITTAL_SPINE: 0.6, TRANSCEREBELLAR: 0.25, TRANSVENTRICULAR: 0.15},
}


def choose_planes(diagnosis: str, count: int, rng: np.random.Generator) -> list[str]:
    """`count` planes for one patient, always at least two different ones when count > 1."""
    weights = PLANE_WEIGHTS[diagnosis]
    names = list(weights)
    p = np.array([weights[n] for n in names])
    picks = [names[i] for i in rng.choice(len(names), size=count, p=p / p.sum())]
    if count > 1 and len(set(picks)) == 1:
        others = [n for n in names if n != picks[0]]
        picks[-1] = others[int(rng.integers(len(others)))]
    return picks
