"""Contact sheets for the docs.

`contact_sheet` has three parts, each cell labelled:
1. classes × planes: every class in every CNS plane (all classes share one plane mix);
   a cell whose plane misses that patient's lesion says "not visible: empty mask";
2. variants: each anomaly's forms, in a plane where they show, and the lemon sign
   before and after 24 weeks;
3. sites: the same normal fetus at each scanner site.
Lesion masks are outlined in orange (dataset images carry no outline).

`other_views_sheet`: the non-CNS planes (abdomen, femur, four-chamber, face
profile) at two gestational ages; they carry no lesion mask.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from app.labels import HUMAN_NAMES, PAPER_CLASSES
from app.synth import anatomy as dx
from app.synth.anatomy import PatientAnatomy
from app.synth.body import OTHER_PLANES
from app.synth.dataset import HEADER, make_patient
from app.synth.head import CORONAL, TRANSCEREBELLAR, TRANSTHALAMIC, TRANSVENTRICULAR
from app.synth.planes import CNS_PLANES, visible_planes
from app.synth.pngio import write_png
from app.synth.scene import acquire, plan_view
from app.synth.sites import DEFAULT_SITE, SITES, Site
from app.synth.spine import SAGITTAL_SPINE

CELL = (132, 176)  # height, width of one image cell: small, so the sheet stays < 400 KB
_LABEL_WIDTH = 150
_BAND = 22
_ORANGE = (255, 150, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SHORT = {
    TRANSVENTRICULAR: "TV",
    TRANSTHALAMIC: "TT",
    TRANSCEREBELLAR: "TC",
    CORONAL: "coronal",
    SAGITTAL_SPINE: "spine",
}


def _caption(cell: np.ndarray, text: str, row: int = 0) -> None:
    y = cell.shape[0] - 6 - 13 * row
    cv2.putText(cell, text, (4, y), _FONT, 0.36, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(cell, text, (4, y), _FONT, 0.36, (240, 240, 240), 1, cv2.LINE_AA)


def _render(anatomy: PatientAnatomy, plane: str, rng_key: list[int], site: Site = DEFAULT_SITE) -> np.ndarray:
    rng = np.random.default_rng(rng_key)
    image = acquire(plan_view(plane, anatomy, rng, site), rng, (HEADER, "2025-01-01 09:00"))
    rgb = image.pixels if image.pixels.ndim == 3 else np.repeat(image.pixels[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb)
    contours, _ = cv2.findContours(image.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(rgb, contours, -1, _ORANGE, 2)
    height, width = CELL
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def _row(label: str, cells: list[np.ndarray], columns: int) -> np.ndarray:
    height, width = CELL
    side = np.zeros((height, _LABEL_WIDTH, 3), np.uint8)
    for k, word in enumerate(label.split(" / ")):
        cv2.putText(side, word, (8, height // 2 + 18 * k), _FONT, 0.45, (230,) * 3, 1, cv2.LINE_AA)
    cells = cells + [np.zeros((height, width, 3), np.uint8)] * (columns - len(cells))
    return np.hstack([side, *cells])


def _band(text: str, columns: int) -> np.ndarray:
    band = np.full((_BAND, _LABEL_WIDTH + CELL[1] * columns, 3), 40, np.uint8)
    cv2.putText(band, text, (8, 16), _FONT, 0.5, (240,) * 3, 1, cv2.LINE_AA)
    return band


def _first(seed: int, diagnosis: str, **traits: object) -> PatientAnatomy:
    """The first patient of `diagnosis` with the given traits (variants are drawn at random)."""
    for index in range(400):
        anatomy = make_patient(seed, index, diagnosis).anatomy
        if all(getattr(anatomy, key) == value for key, value in traits.items()):
            return anatomy
    raise ValueError(f"no {diagnosis} patient with {traits}")


def _variant_rows(seed: int, columns: int) -> list[np.ndarray]:
    plans: list[tuple[str, list[tuple[str, PatientAnatomy, str]]]] = [
        (
            HUMAN_NAMES[dx.HOLOPROSENCEPHALY],
            [(s, _first(seed, dx.HOLOPROSENCEPHALY, subtype=s), TRANSVENTRICULAR) for s in dx.HPE_SUBTYPES],
        ),
        (
            HUMAN_NAMES[dx.ENCEPHALOCELE],
            [
                (f"{s}-{c}", _first(seed, dx.ENCEPHALOCELE, subtype=s, details=c), plane)
                for s, c, plane in (
                    ("occipital", "cystic", TRANSCEREBELLAR),
                    ("occipital", "brain", CORONAL),
                    ("parietal", "cystic", TRANSVENTRICULAR),
                    ("frontal", "brain", TRANSTHALAMIC),
                )
            ],
        ),
        (
            HUMAN_NAMES[dx.ANENCEPHALY],
            [
                (s, _first(seed, dx.ANENCEPHALY, subtype=s), plane)
                for s in dx.ANENCEPHALY_FORMS
                for plane in (TRANSTHALAMIC, CORONAL)
            ],
        ),
        (
            HUMAN_NAMES[dx.RACHISCHISIS],
            [(s, _first(seed, dx.RACHISCHISIS, subtype=s), SAGITTAL_SPINE) for s in dx.SPINAL_LEVELS],
        ),
    ]
    rows = []
    for number, (label, items) in enumerate(plans):
        cells = []
        for k, (name, anatomy, plane) in enumerate(items):
            cell = _render(anatomy, plane, [seed, number, 9, k])
            _caption(cell, f"{name}, {_SHORT[plane]}")
            cells.append(cell)
        rows.append(_row(label, cells, columns))
    # Lemon sign: the same kind of fetus before and after 24 weeks.
    cells = []
    for k, (weeks, lemon) in enumerate(((20.0, 0.16), (21.5, 0.14), (30.0, 0.0), (34.0, 0.0))):
        anatomy = replace(_first(seed, dx.RACHISCHISIS), gestational_age_weeks=weeks, lemon_depth=lemon)
        cell = _render(anatomy, TRANSVENTRICULAR, [seed, 9, 9, k])
        _caption(cell, f"{weeks:.0f} wk: {'lemon' if lemon else 'no lemon'}")
        cells.append(cell)
    rows.append(_row("Rachischisis / lemon by age", cells, columns))
    return rows


def contact_sheet(seed: int = 0) -> np.ndarray:
    columns = max(len(CNS_PLANES), len(SITES))
    parts = [_band("classes x planes (one plane mix for every class)", columns)]
    for index, diagnosis in enumerate(PAPER_CLASSES):
        anatomy = make_patient(seed, index, diagnosis).anatomy
        cells = []
        for k, plane in enumerate(CNS_PLANES):
            cell = _render(anatomy, plane, [seed, index, 7, k])
            shown = diagnosis == dx.NORMAL or plane in visible_planes(anatomy)
            _caption(cell, _SHORT[plane])
            if not shown:
                _caption(cell, "not visible: empty mask", 1)
            cells.append(cell)
        rows_label = HUMAN_NAMES[diagnosis] + (f" / ({anatomy.variant})" if anatomy.variant else "")
        parts.append(_row(rows_label, cells, columns))
    parts.append(_band("variants", columns))
    parts.extend(_variant_rows(seed, columns))
    parts.append(_band("sites (same normal fetus, transthalamic)", columns))
    anatomy = make_patient(seed, 0, dx.NORMAL).anatomy
    cells = []
    for k, site in enumerate(SITES.values()):
        cell = _render(anatomy, TRANSTHALAMIC, [seed, 0, 10, k], site)
        _caption(cell, f"site {site.name}: {site.probe}")
        cells.append(cell)
    parts.append(_row("sites", cells, columns))
    return np.vstack(parts)


def write_contact_sheet(path: Path, seed: int = 0) -> Path:
    write_png(
        Path(path), contact_sheet(seed), "contact sheet of synthetic phantoms; lesion masks outlined", 9, 128
    )
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
