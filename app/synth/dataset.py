"""`generate_dataset`: a folder of synthetic patients with lesion masks and a manifest.

Layout under OUT:
  <class>/<patient_id>/<NN>_<plane>.png          B-mode images (PNG formats)
  masks/<class>/<patient_id>/<NN>_<plane>.png    lesion masks, 0/255, all zero for normal
  dicom/<class>/<patient_id>/*.dcm               one DICOM study per patient (DICOM formats)
  manifest.csv  patient_id,class,gestational_age_weeks,plane,image,mask (paths relative to OUT)

With format "dicom" alone the manifest's image column names the single-frame DICOM file.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from app.labels import PAPER_CLASSES
from app.synth.anatomy import PatientAnatomy, sample_anatomy
from app.synth.planes import choose_planes
from app.synth.pngio import write_png
from app.synth.scene import RenderedImage, acquire, plan_view

FORMATS = ("png", "dicom", "both")
MANIFEST_COLUMNS = ("patient_id", "class", "gestational_age_weeks", "plane", "image", "mask")
_EPOCH = dt.date(2024, 1, 1)
HEADER = "FETALCNS  OB  FETAL CNS"


@dataclass(frozen=True)
class SyntheticPatient:
    index: int
    patient_id: str
    diagnosis: str
    anatomy: PatientAnatomy
    study_date: dt.date
    study_time: str  # HHMMSS
    seed: int


def make_patient(seed: int, index: int, diagnosis: str) -> SyntheticPatient:
    rng = np.random.default_rng([seed, index, 0])
    anatomy = sample_anatomy(diagnosis, rng)
    date = _EPOCH + dt.timedelta(days=int(rng.integers(0, 730)))
    time = f"{int(rng.integers(8, 18)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    return SyntheticPatient(
        index=index,
        patient_id=f"SYN{seed % 10000:04d}-{index + 1:05d}",
        diagnosis=diagnosis,
        anatomy=anatomy,
        study_date=date,
        study_time=time,
        seed=seed,
    )


@dataclass(frozen=True)
class PatientImages:
    patient: SyntheticPatient
    images: list[RenderedImage]
    planes: list[str]


def render_patient(patient: SyntheticPatient, images_per_patient: tuple[int, int]) -> PatientImages:
    rng = np.random.default_rng([patient.seed, patient.index, 1])
    low, high = images_per_patient
    count = int(rng.integers(low, high + 1))
    planes = choose_planes(patient.diagnosis, count, rng)
    stamp = f"{patient.study_date:%Y-%m-%d} {patient.study_time[:2]}:{patient.study_time[2:4]}"
    images = []
    for plane in planes:
        composition = plan_view(plane, patient.anatomy, rng)
        images.append(acquire(composition, rng, (HEADER, stamp)))
    return PatientImages(patient=patient, images=images, planes=planes)


def _validate(n_patients: int, fmt: str, images_per_patient: tuple[int, int], classes: Sequence[str]) -> None:
    if n_patients < 1:
        raise ValueError("the number of patients must be at least 1")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    low, high = images_per_patient
    if not 1 <= low <= high:
        raise ValueError(f"images per patient must satisfy 1 <= MIN <= MAX, got {low}-{high}")
    unknown = [c for c in classes if c not in PAPER_CLASSES]
    if unknown or not classes:
        raise ValueError(f"unknown classes {unknown}; choose from {', '.join(PAPER_CLASSES)}")


def generate_dataset(
    out: Path,
    n_patients: int,
    seed: int = 0,
    fmt: str = "png",
    images_per_patient: tuple[int, int] = (3, 6),
    classes: Sequence[str] | None = None,
    progress: bool = False,
) -> Path:
    """Write `n_patients` synthetic patients, balanced across `classes`; returns the manifest path.

    Patient i has class classes[i % len(classes)] and depends only on (seed, i),
    so any prefix of a dataset is balanced and reproducible.
    """
    chosen = list(classes) if classes else list(PAPER_CLASSES)
    _validate(n_patients, fmt, images_per_patient, chosen)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for index in tqdm(range(n_patients), desc="synthetic patients", unit="patient", disable=not progress):
        patient = make_patient(seed, index, chosen[index % len(chosen)])
        rendered = render_patient(patient, images_per_patient)
        rows.extend(_write_patient(out, rendered, fmt))
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _write_patient(out: Path, rendered: PatientImages, fmt: str) -> list[dict[str, str]]:
    patient = rendered.patient
    rel_dir = Path(patient.diagnosis) / patient.patient_id
    dicom_paths: list[Path] = []
    if fmt in ("dicom", "both"):
        from app.synth.dicomio import write_study

        dicom_paths = write_study(out / "dicom" / rel_dir, rendered)
    rows = []
    for number, (image, plane) in enumerate(zip(rendered.images, rendered.planes, strict=True), start=1):
        name = f"{number:02d}_{plane}.png"
        description = f"{plane} view, {patient.anatomy.gestational_age_weeks:.1f} weeks"
        mask_rel = Path("masks") / rel_dir / name
        write_png(out / mask_rel, image.mask, "lesion mask for " + description)
        if fmt == "dicom":
            image_rel = dicom_paths[number - 1].relative_to(out)
        else:
            image_rel = rel_dir / name
            write_png(out / image_rel, image.pixels, description)
        rows.append(
            {
                "patient_id": patient.patient_id,
                "class": patient.diagnosis,
                "gestational_age_weeks": f"{patient.anatomy.gestational_age_weeks:.1f}",
                "plane": plane,
                "image": image_rel.as_posix(),
                "mask": mask_rel.as_posix(),
            }
        )
    return rows
