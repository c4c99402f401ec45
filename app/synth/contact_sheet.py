"""Contact sheets for the docs.

`contact_sheet`: one row per class; columns axial, coronal and sagittal spine.
Lesion masks are outlined in orange. A class that is never imaged in a plane
(its lesion would not show there) gets an empty cell saying so.

`other_views_sheet`: the non-CNS planes (abdomen, femur, four-chamber, face
profile) at two gestational ages; they carry no lesion mask.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from app.labels import HUMAN_NAMES, PAPER_CLASSES
from app.synth.body import OTHER_PLANES
from app.synth.dataset import HEADER, make_patient
from app.synth.head import CORONAL, TRANSCEREBELLAR, TRANSTHALAMIC, TRANSVENTRICULAR
from app.synth.planes import PLANE_WEIGHTS
from app.synth.pngio import write_png
from app.synth.scene import acquire, plan_view
from app.synth.spine import SAGITTAL_SPINE

COLUMNS = ("axial", "coronal", "sagittal spine")
_AXIAL_PREFERENCE = {
    "Anencephaly": TRANSTHALAMIC,
    "Encephalocele_meningocele": TRANSCEREBELLAR,
    "Holoprosencephaly": TRANSVENTRICULAR,
    "normal": TRANSTHALAMIC,
    "Rachischisis": TRANSCEREBELLAR,
}
CELL = (300, 400)  # height, width of one image cell
_LABEL_BAND = 26
_ORANGE = (255, 150, 0)


def _cell(diagnosis: str, column: str, seed: int, index: int) -> np.ndarray:
    plane = {"axial": _AXIAL_PREFERENCE[diagnosis], "coronal": CORONAL, "sagittal spine": SAGITTAL_SPINE}[
        column
    ]
    height, width = CELL
    if plane not in PLANE_WEIGHTS[diagnosis]:
        cell = np.full((height, width, 3), 24, np.uint8)
        cv2.putText(
            cell, "not imaged for this class", (70, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (150,) * 3
        )
        return cell
    patient = make_patient(seed, index, diagnosis)
    rng = np.random.default_rng([seed, index, 7, COLUMNS.index(column)])
    image = acquire(plan_view(plane, patient.anatomy, rng), rng, (HEADER, "2025-01-01 09:00"))
    rgb = np.repeat(image.pixels[:, :, None], 3, axis=2)
    contours, _ = cv2.findContours(image.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(rgb, contours, -1, _ORANGE, 2)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def contact_sheet(seed: int = 0) -> np.ndarray:
    height, width = CELL
    rows = []
    header = np.zeros((_LABEL_BAND, 150 + width * len(COLUMNS), 3), np.uint8)
    for i, column in enumerate(COLUMNS):
        cv2.putText(header, column, (150 + i * width + 10, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (230,) * 3)
    rows.append(header)
    for index, diagnosis in enumerate(PAPER_CLASSES):
        label = np.zeros((height, 150, 3), np.uint8)
        for k, word in enumerate(HUMAN_NAMES[diagnosis].split(" / ")):
            cv2.putText(label, word, (8, height // 2 + 22 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230,) * 3)
        cells = [_cell(diagnosis, column, seed, index) for column in COLUMNS]
        rows.append(np.hstack([label, *cells]))
    return np.vstack(rows)


def write_contact_sheet(path: Path, seed: int = 0) -> Path:
    write_png(Path(path), contact_sheet(seed), "contact sheet of synthetic phantoms; lesion masks outlined")
    return Path(path)


OTHER_CELL = (150, 200)  # height, width: small, the sheet is for the docs


def other_views_sheet(seed: int = 0, rows: int = 2) -> np.ndarray:
    """One column per non-CNS plane, one row per normal patient; each cell is labelled."""
    height, width = OTHER_CELL
    grid = []
    for row in range(rows):
        patient = make_patient(seed, row, "normal")
        cells = []
        for column, plane in enumerate(OTHER_PLANES):
            rng = np.random.default_rng([seed, row, 8, column])
            image = acquire(plan_view(plane, patient.anatomy, rng), rng, (HEADER, "2025-01-01 09:00"))
            cell = cv2.resize(image.pixels, (width, height), interpolation=cv2.INTER_AREA)
            label = f"{plane}  {patient.anatomy.gestational_age_weeks:.0f} wk"
            cv2.putText(cell, label, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, 230, 1, cv2.LINE_AA)
            cells.append(cell)
        grid.append(np.hstack(cells))
    return np.vstack(grid)


def write_other_views_sheet(path: Path, seed: int = 0) -> Path:
    write_png(Path(path), other_views_sheet(seed), "contact sheet of synthetic non-CNS views (no lesions)")
    return Path(path)
