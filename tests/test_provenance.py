"""Provenance: portable paths, the code commit, the data hash, synth's dataset.json, full-seed IDs."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.provenance import (
    absolute_paths_in,
    code_commit,
    data_hash,
    portable_command,
    portable_path,
    read_dataset_record,
    verify_data_hash,
)
from app.synth import generate_dataset
from app.synth.dataset import MAX_PATIENT_ID_LENGTH, check_seed, synthetic_patient_id
from app.training.data import SYNTH_PATIENT_ID, describe_dataset, discover_samples, verify_dataset

BIG_SEED = 2**63 + 12345  # more digits than the old SYN<seed % 10000> kept


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prov") / "tiny-set"
    generate_dataset(
        out, 5, seed=BIG_SEED, images_per_patient=(1, 2), command=["fetalcns", "synth", "--out", str(out)]
    )
    return out


def test_paths_inside_the_root_are_relative_and_others_keep_only_their_folder_name(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "data" / "train").mkdir(parents=True)
    assert portable_path(root / "data" / "train", root) == "data/train"
    assert portable_path(tmp_path / "elsewhere" / "holdout", root) == "holdout"
    assert portable_command(["fetalcns", "synth", "--out", str(tmp_path / "x"), "--seed", "3"], root) == [
        "fetalcns",
        "synth",
        "--out",
        "x",
        "--seed",
        "3",
    ]
    assert portable_command([f"--out={root / 'data'}"], root) == ["--out=data"]


def test_code_commit_is_head_of_the_checkout_with_a_dirty_flag(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('fit')\n")
    _git(repo, "add", "train.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert code_commit(repo) == {"commit": head, "dirty": False}
    (repo / "train.py").write_text("print('fit harder')\n")
    assert code_commit(repo) == {"commit": head, "dirty": True}


def test_code_commit_outside_git_says_why_instead_of_failing(tmp_path: Path) -> None:
    result = code_commit(tmp_path)
    assert result["commit"] is None and result["dirty"] is None
    assert result["reason"]


def _independent_hash(data_dir: Path) -> str:
    """The documented scheme, written out: manifest + listed images, sorted by relative path."""
    with (data_dir / "manifest.csv").open(newline="") as handle:
        names = sorted({"manifest.csv", *(row["image"] for row in csv.DictReader(handle))})
    digest = hashlib.sha256()
    for name in names:
        content = (data_dir / name).read_bytes()
        digest.update(f"{name}\n{len(content)}\n".encode() + content)
    return digest.hexdigest()


def test_data_hash_is_the_documented_sha256_and_changes_with_one_pixel(
    tiny_set: Path, tmp_path: Path
) -> None:
    recorded = data_hash(tiny_set)
    assert recorded["sha256"] == _independent_hash(tiny_set)
    assert recorded["files"] == 1 + len(discover_samples(tiny_set))
    assert data_hash(tiny_set)["sha256"] == recorded["sha256"]  # stable

    copy = tmp_path / "copy"
    shutil.copytree(tiny_set, copy)
    assert verify_data_hash(copy, recorded)
    image = discover_samples(copy)[0].path
    pixels = np.array(Image.open(image))
    pixels[0, 0] = (int(pixels[0, 0].flat[0]) + 1) % 256
    Image.fromarray(pixels).save(image)
    assert not verify_data_hash(copy, recorded)
    assert data_hash(copy)["sha256"] == _independent_hash(copy)


def test_describe_dataset_records_hash_record_and_no_absolute_path(tiny_set: Path) -> None:
    described = describe_dataset(tiny_set, discover_samples(tiny_set))
    assert described["data"] == "tiny-set"  # outside the project: the folder name only
    assert described["data_hash"]["sha256"] == _independent_hash(tiny_set)
    assert described["generator"]["seed"] == BIG_SEED
    assert described["dataset_record"]["seed"] == BIG_SEED
    assert described["dataset_record"]["command"] == ["fetalcns", "synth", "--out", "tiny-set"]
    assert absolute_paths_in(described) == []
    assert verify_dataset(tiny_set, described)


def test_synth_cli_writes_a_dataset_record_that_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "set"
    argv = ["synth", "--out", str(out), "--patients", "3", "--seed", "42", "--images-per-patient", "1-1"]
    assert main(argv) == 0
    record = read_dataset_record(out)
    assert record is not None
    assert record == json.loads((out / "dataset.json").read_text())
    assert record["tool"] == "fetalcns synth" and record["version"]
    assert record["seed"] == 42 and record["options"]["seed"] == 42
    assert record["options"]["patients"] == 3 and record["options"]["images_per_patient"] == [1, 1]
    assert record["command"] == ["fetalcns", *argv]
    assert record["counts"]["patients"] == 3 and record["counts"]["images"] == 3
    assert record["counts"]["cns_images"] == 3 and record["counts"]["other_view_images"] == 0
    assert record["created"].endswith("+00:00")


def test_patient_ids_carry_the_full_seed_and_fit_a_dicom_patient_id(tiny_set: Path) -> None:
    patients = {s.patient for s in discover_samples(tiny_set)}
    assert patients == {synthetic_patient_id(BIG_SEED, i) for i in range(5)}
    assert all(len(p) <= MAX_PATIENT_ID_LENGTH for p in patients)
    # The reader takes the seed back from new IDs and from the old 4-digit ones alike.
    match = SYNTH_PATIENT_ID.fullmatch(synthetic_patient_id(BIG_SEED, 0))
    assert match is not None and int(match.group(1)) == BIG_SEED
    old = SYNTH_PATIENT_ID.fullmatch("SYN0007-00001")
    assert old is not None and int(old.group(1)) == 7
    with pytest.raises(ValueError, match="DICOM PatientID"):
        check_seed(10**60)
    with pytest.raises(ValueError, match="0 or more"):
        check_seed(-1)
