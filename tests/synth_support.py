"""Helpers for the synthetic-data tests: render single images without writing files."""

from __future__ import annotations

import cv2
import numpy as np

from app.synth.dataset import SyntheticPatient, make_patient
from app.synth.planes import visible_planes
from app.synth.scene import PLANES, RenderedImage, acquire, plan_view


def visible_patient(diagnosis: str, plane: str, seed: int, index: int, **traits: object) -> SyntheticPatient:
    """The first patient from `index` on whose lesion shows in CNS `plane` (and who has `traits`).

    Lesions show only in some planes and vary between patients (app/synth/planes.py,
    anatomy.py), so a test about how a lesion is drawn picks a patient who has it there.
    """
    for candidate in range(index, index + 500):
        patient = make_patient(seed, candidate, diagnosis)
        anatomy = patient.anatomy
        shown = diagnosis == "normal" or plane not in PLANES or plane in visible_planes(anatomy)
        if shown and all(getattr(anatomy, key) == value for key, value in traits.items()):
            return patient
    raise AssertionError(f"no {diagnosis} patient with {traits} shows the lesion in {plane}")


def render(diagnosis: str, plane: str, seed: int = 0, index: int = 0, **traits: object) -> RenderedImage:
    patient = visible_patient(diagnosis, plane, seed, index, **traits)
    index = patient.index
    rng = np.random.default_rng([seed, index, 99])
    return acquire(plan_view(plane, patient.anatomy, rng), rng, ("TEST HEADER", "2025-01-01 09:00"))


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the filled polygon, drawn independently of the renderer's own helpers."""
    layer = np.zeros(shape, np.uint8)
    cv2.fillPoly(layer, [np.round(points).astype(np.int32)], 1)
    return layer.astype(bool)


def near(mask: np.ndarray, points: np.ndarray, radius: float) -> np.ndarray:
    """For each point, whether a mask pixel lies within `radius` px."""
    distance = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 5)
    h, w = mask.shape
    xs = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
    return distance[ys, xs] <= radius
