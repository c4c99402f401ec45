"""Reading a training set in the paper's layout: DIR/<class>/<patient>/<image>.

`fetalcns synth` writes exactly this layout plus DIR/masks/, DIR/dicom/ and DIR/manifest.csv;
the first two are ignored here and the manifest only adds gestational age and masks. Its
non-CNS views (DIR/other_views/, manifest view_scope "other") are never training data: the
folder is ignored, and so is any image whose manifest row says view_scope "other".
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from app.labels import PAPER_CLASSES
from app.preprocess import PreprocessSpec, crop, ensure_rgb_uint8, normalize, resize, scan_box
from app.provenance import data_hash, portable_path, portable_record, read_dataset_record, verify_data_hash

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
IGNORED_DIRS = frozenset({"masks", "dicom", "other_views"})
MANIFEST = "manifest.csv"
OUT_OF_SCOPE = "other"  # manifest view_scope of a non-CNS plane
SYNTH_SOURCE = "fetalcns synth"
# SYN<seed>-<n>: the full seed; older sets wrote the seed modulo 10000 in 4 digits (SYN0007-00001),
# which this reads too (as seed 7).
SYNTH_PATIENT_ID = re.compile(r"SYN(\d+)-\d+")


class DatasetError(ValueError):
    """The data directory cannot be used for training; the message says why."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    patient: str
    gestational_age_weeks: float | None = None
    mask: Path | None = None
    # Every manifest column of the image's row, for reading any of them generically (plane, site...).
    columns: tuple[tuple[str, str], ...] = ()

    def column(self, name: str) -> str | None:
        """The image's manifest value in column `name`; None without one (or when it is empty)."""
        return dict(self.columns).get(name) or None


def read_manifest(data_dir: Path) -> dict[Path, dict[str, str]]:
    """Manifest rows keyed by the image's absolute path; empty when there is no manifest."""
    manifest = data_dir / MANIFEST
    if not manifest.is_file():
        return {}
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("image")]
    return {(data_dir / row["image"]).resolve(): row for row in rows}


def _optional_float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def discover_samples(data_dir: Path, classes: tuple[str, ...] = PAPER_CLASSES) -> list[Sample]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"data directory {data_dir} does not exist")
    manifest = read_manifest(data_dir)
    samples: list[Sample] = []
    patient_class: dict[str, str] = {}
    for label, class_name in enumerate(classes):
        class_dir = data_dir / class_name
        if not class_dir.is_dir():
            continue
        for patient_dir in sorted(p for p in class_dir.iterdir() if p.is_dir()):
            patient = patient_dir.name
            if patient_class.setdefault(patient, class_name) != class_name:
                raise DatasetError(
                    f"patient folder {patient!r} appears under both {patient_class[patient]} and {class_name}"
                )
            for image in sorted(patient_dir.iterdir()):
                if image.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                row = manifest.get(image.resolve(), {})
                if row.get("view_scope") == OUT_OF_SCOPE:
                    continue
                mask = data_dir / row["mask"] if row.get("mask") else None
                samples.append(
                    Sample(
                        path=image,
                        label=label,
                        patient=patient,
                        gestational_age_weeks=_optional_float(row.get("gestational_age_weeks")),
                        mask=mask,
                        columns=tuple(sorted((k, v) for k, v in row.items() if k and v is not None)),
                    )
                )
    if not samples:
        known = set(classes) | IGNORED_DIRS
        unknown = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and p.name not in known)
        found = f" (found folders: {', '.join(unknown)})" if unknown else ""
        raise DatasetError(
            f"no images found in {data_dir}; expected {data_dir}/<class>/<patient>/<image>.png "
            f"with classes {', '.join(classes)}{found}"
        )
    return samples


def describe_dataset(data_dir: Path, samples: list[Sample]) -> dict[str, Any]:
    """Provenance for the model card: counts, the data hash, and for synthetic data the generator's
    settings (its dataset.json when present). No absolute path: see app.provenance.portable_path."""
    data_dir = Path(data_dir)
    patients = {s.patient for s in samples}
    per_class = Counter(PAPER_CLASSES[s.label] for s in samples)
    info: dict[str, Any] = {
        "data": portable_path(data_dir),
        "patients": len(patients),
        "images": len(samples),
        "images_per_class": dict(per_class),
        "patients_per_class": dict(Counter(PAPER_CLASSES[s.label] for s in _one_per_patient(samples))),
        "synthetic": False,
        "data_hash": data_hash(data_dir, [s.path for s in samples]),
    }
    info.update(_synth_settings(samples))
    record = read_dataset_record(data_dir)
    if record is not None:
        info["dataset_record"] = portable_record(record)
        if info.get("synthetic") and isinstance(record.get("seed"), int):
            # The record has the seed exactly; patient IDs of older sets kept only its last 4 digits.
            info["generator"]["seed"] = record["seed"]
    return info


def verify_dataset(data_dir: Path, provenance: dict[str, Any]) -> bool:
    """Is DIR the data a card's provenance describes? Recomputes the data hash of DIR."""
    recorded = provenance.get("data_hash") or {}
    # With a manifest the hash covers what it lists; without one, the images training reads.
    samples = [] if (Path(data_dir) / MANIFEST).is_file() else discover_samples(data_dir)
    return verify_data_hash(data_dir, recorded, [s.path for s in samples])


def _one_per_patient(samples: list[Sample]) -> list[Sample]:
    seen: dict[str, Sample] = {}
    for sample in samples:
        seen.setdefault(sample.patient, sample)
    return list(seen.values())


def _synth_settings(samples: list[Sample]) -> dict[str, Any]:
    """The generator's settings when the data came from `fetalcns synth`.

    Its PNGs carry a tEXt "Source: fetalcns synth" and its patient IDs are SYN<seed>-<index>.
    """
    with Image.open(samples[0].path) as first:
        source = getattr(first, "text", {}).get("Source")
    if source != SYNTH_SOURCE:
        return {}
    seeds = {int(m.group(1)) for s in samples if (m := SYNTH_PATIENT_ID.fullmatch(s.patient))}
    return {
        "synthetic": True,
        "generator": {
            "tool": SYNTH_SOURCE,
            "seed": seeds.pop() if len(seeds) == 1 else sorted(seeds),
            "patients": len({s.patient for s in samples}),
            "images": len(samples),
        },
    }


def read_rgb(path: Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB, the display form that serving feeds to preprocessing."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"cannot read image {path}")
    if image.dtype != np.uint8:
        raise DatasetError(f"{path} is not an 8-bit image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return ensure_rgb_uint8(image)


def load_region(path: Path, spec: PreprocessSpec) -> np.ndarray:
    """Decode, crop to the scan area and resize: the uint8 image the network sees before normalising."""
    rgb = read_rgb(path)
    return resize(crop(rgb, scan_box(rgb, spec)), spec.size, spec.interpolation)


def eval_input(region: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Eval-mode transform of a cached region; equals app.preprocess.to_model_input of the image."""
    return normalize(region, spec.mean, spec.std)
