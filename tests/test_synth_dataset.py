"""generate_dataset: layout, manifest, balance, provenance text and reproducibility."""

from __future__ import annotations

import csv
import filecmp
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.labels import PAPER_CLASSES
from app.synth import generate_dataset
from app.synth.dataset import MANIFEST_COLUMNS, make_patient
from app.synth.planes import visible_planes

N_PATIENTS = 5


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth-png")
    generate_dataset(out, N_PATIENTS, seed=11, images_per_patient=(2, 3))
    return out


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS
        return list(reader)


def test_manifest_lists_exactly_the_files_on_disk(dataset: Path) -> None:
    rows = _rows(dataset)
    listed = {r["image"] for r in rows} | {r["mask"] for r in rows} | {"manifest.csv", "dataset.json"}
    on_disk = {p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file()}
    assert listed == on_disk


def test_layout_keeps_masks_out_of_patient_folders(dataset: Path) -> None:
    for row in _rows(dataset):
        image, mask = Path(row["image"]), Path(row["mask"])
        assert image.parts[:2] == (row["class"], row["patient_id"])
        assert mask.parts[:3] == ("masks", row["class"], row["patient_id"])
        assert image.name == mask.name and row["plane"] in image.name
        pixels = np.asarray(Image.open(dataset / image))
        lesion = np.asarray(Image.open(dataset / mask))
        assert pixels.shape == lesion.shape == (480, 640)
        # A lesion shows only in the planes where it is visible; normal images never have one.
        patient = make_patient(11, int(row["patient_id"].rsplit("-", 1)[1]) - 1, row["class"])
        assert lesion.any() == (row["plane"] in visible_planes(patient.anatomy))
        assert 12.0 <= float(row["gestational_age_weeks"]) <= 40.0


def test_patients_are_balanced_across_classes_and_get_several_planes(dataset: Path) -> None:
    rows = _rows(dataset)
    patients = {r["patient_id"]: r["class"] for r in rows}
    assert len(patients) == N_PATIENTS
    assert Counter(patients.values()) == Counter(PAPER_CLASSES)
    for pid in patients:
        planes = [r["plane"] for r in rows if r["patient_id"] == pid]
        assert 2 <= len(planes) <= 3 and len(set(planes)) >= 2


def test_every_png_says_it_is_synthetic(dataset: Path) -> None:
    row = _rows(dataset)[0]
    for rel in (row["image"], row["mask"]):
        text = Image.open(dataset / rel).text  # type: ignore[attr-defined]
        assert "synthetic" in text["Comment"] and "not a patient" in text["Comment"]


def test_same_seed_gives_identical_bytes_and_another_seed_differs(dataset: Path, tmp_path: Path) -> None:
    again, other = tmp_path / "again", tmp_path / "other"
    generate_dataset(again, N_PATIENTS, seed=11, images_per_patient=(2, 3))
    generate_dataset(other, 1, seed=12, images_per_patient=(2, 3))
    # dataset.json records when it was written; everything else must be byte-identical.
    files = [p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file() and p.name != "dataset.json"]
    match, mismatch, errors = filecmp.cmpfiles(dataset, again, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    records = [json.loads((d / "dataset.json").read_text()) for d in (dataset, again)]
    for record in records:
        del record["created"]
    assert records[0] == records[1]
    first = _rows(dataset)[0]["image"]
    other_first = _rows(other)[0]["image"]
    assert (dataset / first).read_bytes() != (other / other_first).read_bytes()


def test_class_subset_and_prefix_stability(dataset: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, 2, seed=11, images_per_patient=(2, 3), classes=["normal", "Rachischisis"])
    rows = _rows(tmp_path)
    assert {r["class"] for r in rows} == {"normal", "Rachischisis"}
    # Patient i depends only on (seed, i, class): the first patient of the full set reappears as is.
    prefix = tmp_path / "prefix"
    generate_dataset(prefix, 1, seed=11, images_per_patient=(2, 3))
    first = _rows(prefix)[0]["image"]
    assert (prefix / first).read_bytes() == (dataset / first).read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_patients": 0}, "at least 1"),
        ({"fmt": "jpeg"}, "unknown format"),
        ({"images_per_patient": (4, 2)}, "images per patient"),
        ({"classes": ["Hydrocephalus"]}, "unknown classes"),
    ],
)
def test_bad_arguments_get_a_clear_message(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"out": tmp_path, "n_patients": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_dataset(**arguments)
