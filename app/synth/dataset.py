"""`generate_dataset`: a folder of synthetic patients with lesion masks and a manifest.

Layout under OUT:
  <class>/<patient_id>/<NN>_<plane>.png          B-mode images (PNG formats)
  masks/<class>/<patient_id>/<NN>_<plane>.png    lesion masks, 0/255, all zero for normal
  dicom/<class>/<patient_id>/*.dcm               one DICOM study per patient (DICOM formats)
  manifest.csv  patient_id,class,gestational_age_weeks,plane,image,mask,view_scope,site,variant
                (paths relative to OUT; view_scope "cns", or "other" for non-CNS planes;
                site: the scanner preset, see app/synth/sites.py; variant: the anomaly's
                subtype, e.g. "alobar" or "occipital-cystic", empty for normal. The last two
                columns come last so that readers of the older layout keep working.)
  dataset.json  how the set was made: tool, version, the full seed, options, command line,
                counts and creation time (training copies it into the model card)

Every class draws its planes from one distribution; an image of a plane in which
the patient's lesion is not visible has an all-zero mask (see app/synth/planes.py).

With other views requested, each patient also gets a few non-CNS planes (abdomen,
femur, four-chamber heart, face profile), outside the class folders so that no
class-folder reader takes them for training data:
  other_views/<patient_id>/<NN>_<plane>.png      (PNG formats)
  dicom/other_views/<patient_id>/IM*.dcm         (DICOM formats; same study, series 3)
Their manifest rows have view_scope "other" and an empty mask: they show no lesion.

With format "dicom" alone the manifest's image column names the single-frame DICOM file.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from app.labels import PAPER_CLASSES
from app.provenance import DATASET_RECORD
from app.synth.anatomy import PatientAnatomy, sample_anatomy
from app.synth.body import OTHER_PLANES
from app.synth.planes import choose_planes
from app.synth.pngio import write_png
from app.synth.scene import RenderedImage, acquire, plan_view
from app.synth.sites import DEFAULT_SITE, SITE_MIX_RANDOM, Site, get_site, site_for_patient

SYNTH_TOOL = "fetalcns synth"
FORMATS = ("png", "dicom", "both")
MANIFEST_COLUMNS = (
    "patient_id",
    "class",
    "gestational_age_weeks",
    "plane",
    "image",
    "mask",
    "view_scope",
    "site",
    "variant",
)
SCOPE_CNS = "cns"
SCOPE_OTHER = "other"  # non-CNS plane: outside the classifier's scope, never training data
OTHER_VIEWS_DIR = "other_views"
OTHER_VIEWS_PER_PATIENT = (1, 3)
_EPOCH = dt.date(2024, 1, 1)
HEADER = "FETALCNS  OB  FETAL CNS"


# DICOM's PatientID (LO) holds at most 64 characters.
MAX_PATIENT_ID_LENGTH = 64


def synthetic_patient_id(seed: int, index: int) -> str:
    """SYN<seed>-<n>: the full seed, so that any image names the exact generator run it came from
    (a seed modulo 10000 made seeds 1 and 10001 indistinguishable)."""
    return f"SYN{seed}-{index + 1:05d}"


def check_seed(seed: int) -> None:
    """A seed must be non-negative (numpy's generators refuse others) and fit a DICOM PatientID."""
    if seed < 0:
        raise ValueError(f"the seed must be 0 or more, got {seed}")
    if len(synthetic_patient_id(seed, 99_999)) > MAX_PATIENT_ID_LENGTH:
        raise ValueError(
            f"the seed has too many digits for a DICOM PatientID (at most {MAX_PATIENT_ID_LENGTH - 9})"
        )


@dataclass(frozen=True)
class SyntheticPatient:
    index: int
    patient_id: str
    diagnosis: str
    anatomy: PatientAnatomy
    study_date: dt.date
    study_time: str  # HHMMSS
    seed: int
    site: Site = DEFAULT_SITE


def make_patient(seed: int, index: int, diagnosis: str, site: Site = DEFAULT_SITE) -> SyntheticPatient:
    rng = np.random.default_rng([seed, index, 0])
    anatomy = sample_anatomy(diagnosis, rng)
    date = _EPOCH + dt.timedelta(days=int(rng.integers(0, 730)))
    time = f"{int(rng.integers(8, 18)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    return SyntheticPatient(
        index=index,
        patient_id=synthetic_patient_id(seed, index),
        diagnosis=diagnosis,
        anatomy=anatomy,
        study_date=date,
        study_time=time,
        seed=seed,
        site=site,
    )


@dataclass(frozen=True)
class PatientImages:
    patient: SyntheticPatient
    images: list[RenderedImage]
    planes: list[str]


def draw_planes(rng: np.random.Generator, diagnosis: str, images_per_patient: tuple[int, int]) -> list[str]:
    """How many images a patient gets, and of which planes (the first draws of their stream)."""
    low, high = images_per_patient
    count = int(rng.integers(low, high + 1))
    return choose_planes(diagnosis, count, rng)


def render_patient(patient: SyntheticPatient, images_per_patient: tuple[int, int]) -> PatientImages:
    rng = np.random.default_rng([patient.seed, patient.index, 1])
    planes = draw_planes(rng, patient.diagnosis, images_per_patient)
    stamp = f"{patient.study_date:%Y-%m-%d} {patient.study_time[:2]}:{patient.study_time[2:4]}"
    images = []
    for plane in planes:
        composition = plan_view(plane, patient.anatomy, rng, patient.site)
        images.append(acquire(composition, rng, (HEADER, stamp)))
    return PatientImages(patient=patient, images=images, planes=planes)


def render_other_views(patient: SyntheticPatient, per_patient: tuple[int, int]) -> PatientImages:
    """A few distinct non-CNS planes of the patient, from their own random stream.

    The stream (seed, index, 3) is used by nothing else, so asking for other views
    leaves every CNS image of the same seed byte-identical.
    """
    rng = np.random.default_rng([patient.seed, patient.index, 3])
    low, high = per_patient
    count = min(int(rng.integers(low, high + 1)), len(OTHER_PLANES))
    picks = sorted(int(i) for i in rng.choice(len(OTHER_PLANES), size=count, replace=False))
    planes = [OTHER_PLANES[i] for i in picks]
    stamp = f"{patient.study_date:%Y-%m-%d} {patient.study_time[:2]}:{patient.study_time[2:4]}"
    images = [
        acquire(plan_view(plane, patient.anatomy, rng, patient.site), rng, (HEADER, stamp))
        for plane in planes
    ]
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
    images_per_patient: tuple[int, int] = (5, 7),
    classes: Sequence[str] | None = None,
    progress: bool = False,
    include_other_views: bool = False,
    other_views_only: bool = False,
    other_views_per_patient: tuple[int, int] = OTHER_VIEWS_PER_PATIENT,
    command: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    site_mix: str | None = None,
) -> Path:
    """Write `n_patients` synthetic patients, balanced across `classes`; returns the manifest path.

    Patient i has class classes[i % len(classes)] and depends only on (seed, i),
    so any prefix of a dataset is balanced and reproducible. `include_other_views`
    adds non-CNS planes (manifest view_scope "other") under OUT/other_views;
    `other_views_only` writes those alone (no CNS images, no masks), e.g. as a set
    for the out-of-distribution check. Neither changes the CNS images of a seed.
    Beside the manifest, DATASET_RECORD (dataset.json) records how the set was made; `command`
    is the command line to record there (the `fetalcns synth` CLI passes its own).
    `sites` spreads patients over the named sites (class-balanced per site);
    `site_mix="random"` draws each patient's site; with neither, all use the default site.
    """
    chosen = list(classes) if classes else list(PAPER_CLASSES)
    _validate(n_patients, fmt, images_per_patient, chosen)
    check_seed(seed)
    low, high = other_views_per_patient
    if not 1 <= low <= high:
        raise ValueError(f"other views per patient must satisfy 1 <= MIN <= MAX, got {low}-{high}")
    if site_mix not in (None, SITE_MIX_RANDOM):
        raise ValueError(f"unknown site mix {site_mix!r}; the only mix is {SITE_MIX_RANDOM!r}")
    for name in sites or ():
        get_site(name)  # fails early, with the list of sites, on an unknown name
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for index in tqdm(range(n_patients), desc="synthetic patients", unit="patient", disable=not progress):
        site = site_for_patient(index, seed, len(chosen), sites, site_mix == SITE_MIX_RANDOM)
        patient = make_patient(seed, index, chosen[index % len(chosen)], site)
        if not other_views_only:
            rows.extend(_write_patient(out, render_patient(patient, images_per_patient), fmt))
        if include_other_views or other_views_only:
            rows.extend(_write_other_views(out, render_other_views(patient, other_views_per_patient), fmt))
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    options = {
        "patients": n_patients,
        "seed": seed,
        "format": fmt,
        "images_per_patient": list(images_per_patient),
        "classes": chosen,
        "include_other_views": include_other_views,
        "other_views_only": other_views_only,
        "other_views_per_patient": list(other_views_per_patient),
        "sites": list(sites) if sites else None,
        "site_mix": site_mix,
    }
    write_dataset_record(out, options, rows, command)
    return manifest


def dataset_record(
    options: dict[str, Any], rows: Sequence[dict[str, str]], command: Sequence[str] | None
) -> dict[str, Any]:
    """What dataset.json holds: tool, version, the full seed, options, command line, counts, time."""
    from app.cli import package_version

    cns = [r for r in rows if r["view_scope"] == SCOPE_CNS]
    return {
        "tool": SYNTH_TOOL,
        "version": package_version(),
        "seed": options["seed"],
        "options": options,
        "command": list(command) if command is not None else None,
        "counts": {
            "patients": len({r["patient_id"] for r in rows}),
            "images": len(rows),
            "cns_images": len(cns),
            "other_view_images": len(rows) - len(cns),
            "images_per_class": dict(sorted(Counter(r["class"] for r in cns).items())),
        },
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }


def write_dataset_record(
    out: Path, options: dict[str, Any], rows: Sequence[dict[str, str]], command: Sequence[str] | None
) -> Path:
    path = Path(out) / DATASET_RECORD
    record = dataset_record(options, rows, command)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


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
                "view_scope": SCOPE_CNS,
                "site": patient.site.name,
                "variant": patient.anatomy.variant,
            }
        )
    return rows


def _write_other_views(out: Path, rendered: PatientImages, fmt: str) -> list[dict[str, str]]:
    """Non-CNS planes: no class folder, no mask (they show no lesion), view_scope "other"."""
    patient = rendered.patient
    dicom_paths: list[Path] = []
    if fmt in ("dicom", "both"):
        from app.synth.dicomio import write_other_views

        dicom_paths = write_other_views(out / "dicom" / OTHER_VIEWS_DIR / patient.patient_id, rendered)
    rows = []
    for number, (image, plane) in enumerate(zip(rendered.images, rendered.planes, strict=True), start=1):
        if fmt == "dicom":
            image_rel = dicom_paths[number - 1].relative_to(out)
        else:
            image_rel = Path(OTHER_VIEWS_DIR) / patient.patient_id / f"{number:02d}_{plane}.png"
            description = f"{plane} view (not CNS), {patient.anatomy.gestational_age_weeks:.1f} weeks"
            write_png(out / image_rel, image.pixels, description)
        rows.append(
            {
                "patient_id": patient.patient_id,
                "class": patient.diagnosis,
                "gestational_age_weeks": f"{patient.anatomy.gestational_age_weeks:.1f}",
                "plane": plane,
                "image": image_rel.as_posix(),
                "mask": "",
                "view_scope": SCOPE_OTHER,
                "site": patient.site.name,
                "variant": patient.anatomy.variant,
            }
        )
    return rows
