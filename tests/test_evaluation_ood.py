"""`fetalcns evaluate --ood`: the OOD check, checked against an independent recomputation.

The tiny model gets both OOD signals from `calibrate-ood`, then thresholds at percentiles of its
own in-distribution scores so that both signals flag some images of every kind. Groups: blank
PNGs, noise PNGs inside a ZIP, and pydicom's test files. The reference numbers come from the
engine image by image (`engine.predict`), sklearn's roc_auc_score, and the verdict rule's
counts written out by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from training_support import tiny_synth_dir

from app.cli import main
from app.evaluation.metrics import binary_auroc
from app.evaluation.ood import ScoredGroup, combined_scores, ood_block
from app.inference.engine import InferenceEngine
from app.ingest import ingest_paths
from app.ingest.types import IngestedImage
from app.modelcard import OodRule, OodSignal, load_model_card, write_model_card
from app.synth.dataset import generate_dataset
from app.training.data import discover_samples, read_rgb

__all__ = ["tiny_synth_dir"]

METHODS = ("energy", "mahalanobis", "combined")


def test_binary_auroc_matches_sklearn_with_ties_and_counts_nan_as_most_unfamiliar() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        neg = rng.integers(0, 6, rng.integers(1, 15)).astype(float)
        pos = rng.integers(0, 8, rng.integers(1, 15)).astype(float)
        y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
        assert binary_auroc(neg, pos) == pytest.approx(roc_auc_score(y, np.r_[neg, pos]), abs=1e-12)
    assert binary_auroc([0.0, 1.0], [0.5, 2.0]) == 0.75
    assert binary_auroc([0.0, 1.0], [np.nan]) == 1.0
    assert binary_auroc([], [1.0]) is None and binary_auroc([1.0], []) is None


def test_combined_score_is_positive_exactly_when_the_rule_flags() -> None:
    rule = OodRule((OodSignal("energy", -5.0), OodSignal("mahalanobis", 10.0)))
    rng = np.random.default_rng(0)
    scores = {"energy": rng.normal(-6, 1.5, 200), "mahalanobis": rng.normal(8, 3, 200)}
    scores["energy"][0] = np.nan
    combined = combined_scores(scores, rule, {"energy": -7.0, "mahalanobis": 6.0})
    flags = [rule.flags({m: float(scores[m][i]) for m in scores}) for i in range(200)]
    assert list(combined > 0) == flags and combined[0] == np.inf
    # units: energy 2 (threshold -5 minus median -7), Mahalanobis 4
    expected = max((scores["energy"][1] + 5) / 2, (scores["mahalanobis"][1] - 10) / 4)
    assert combined[1] == pytest.approx(expected)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels[:, :, ::-1].copy())


@pytest.fixture(scope="module")
def ood_dirs(tiny_synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """blank/ (two studies of PNG frames), noise/ (a ZIP of two studies), dicom/ (pydicom files),
    and phantoms/: six in-distribution patients, so that some studies do get a verdict."""
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("ood")
    for study, shape in (("s1", (240, 320)), ("s2", (300, 300))):
        for level in (0, 128, 255):
            _write_png(root / "blank" / study / f"{level}.png", np.full((*shape, 3), level, np.uint8))
    rng = np.random.default_rng(1)
    staging = tmp_path_factory.mktemp("noise-staging")
    for study in ("n1", "n2"):
        for i in range(3):
            grey = rng.integers(0, 256, (200, 260), dtype=np.uint8)
            _write_png(staging / study / f"{i}.png", np.repeat(grey[:, :, None], 3, axis=2))
    (root / "noise").mkdir()
    with zipfile.ZipFile(root / "noise" / "noise.zip", "w") as archive:
        for png in sorted(staging.rglob("*.png")):
            archive.write(png, png.relative_to(staging).as_posix())
    (root / "dicom").mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "examples_palette.dcm", "US1_UNCR.dcm"):
        found = get_testdata_file(name, download=False)
        if found is not None:
            shutil.copy(str(found), root / "dicom" / name)
    assert len(list((root / "dicom").iterdir())) >= 2
    patients = sorted({s.path.parent for s in discover_samples(tiny_synth_dir)})
    for folder in patients[::2] + patients[1:2]:
        shutil.copytree(folder, root / "phantoms" / folder.name)
    return [root / "blank", root / "noise", root / "dicom", root / "phantoms"]


def _id_images(data_dir: Path) -> list[IngestedImage]:
    return [
        IngestedImage(source=s.path.name, frame=None, pixels=read_rgb(s.path), scan_box=None, sha256="")
        for s in discover_samples(data_dir)
    ]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tiny_synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with both signals, thresholded where they flag part of every group."""
    calib = tmp_path_factory.mktemp("calib") / "data"
    generate_dataset(calib, n_patients=10, seed=5, images_per_patient=(2, 2))
    model = tmp_path_factory.mktemp("ood-model") / "tiny"
    shutil.copytree(tiny_model_dir, model)
    assert main(["calibrate-ood", "--model", str(model), "--data", str(calib), "--folds", "2"]) == 0
    predictions = InferenceEngine(model, device="cpu").predict(_id_images(tiny_synth_dir))
    card = json.loads((model / "model.json").read_text())
    ood = card["thresholds"]["ood"]
    ood["threshold"] = float(np.percentile([p.ood_scores["energy"] for p in predictions], 85))
    distance = [p.ood_scores["mahalanobis"] for p in predictions]
    ood["combined_with"][0]["threshold"] = float(np.percentile(distance, 90))
    write_model_card(model, card)
    return model


@pytest.fixture(scope="module")
def evaluated(
    model_dir: Path, tiny_synth_dir: Path, ood_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report")
    command = ["evaluate", "--model", str(model_dir), "--data", str(tiny_synth_dir), "--out", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*command, "--bootstrap", "5", "--ood", *map(str, ood_dirs)]) == 0
    return out, printed.getvalue()


def _reference(model_dir: Path, data_dir: Path, ood_dirs: list[Path]) -> dict:
    """Every number of the check, recomputed image by image through the engine."""
    engine = InferenceEngine(model_dir, device="cpu", batch_size=4)
    card = load_model_card(model_dir)
    rule, gate = card.ood_rule, card.verdict_rule
    inside = engine.predict(_id_images(data_dir))
    id_scores = {m: np.array([p.ood_scores[m] for p in inside]) for m in rule.methods}
    medians = {m: float(np.median(v)) for m, v in id_scores.items()}

    def combined(scores: dict[str, np.ndarray]) -> np.ndarray:
        return np.max(
            [(scores[s.method] - s.threshold) / (s.threshold - medians[s.method]) for s in rule.signals],
            axis=0,
        )

    id_scores["combined"] = combined(id_scores)
    groups = {}
    for directory in ood_dirs:
        scores: dict[str, list[float]] = {m: [] for m in rule.methods}
        flagged, verdicts = [], []
        for study in ingest_paths([directory]).studies:
            predictions = engine.predict(study.images)
            usable = sum(not p.ood and p.quality_issue is None for p in predictions)
            left_out = len(predictions) - usable
            verdicts.append(
                usable >= gate.min_usable_images and left_out <= gate.max_excluded_fraction * len(predictions)
            )
            flagged += [p.ood for p in predictions]
            for m in rule.methods:
                scores[m] += [p.ood_scores[m] for p in predictions]
        arrays = {m: np.array(v) for m, v in scores.items()}
        arrays["combined"] = combined(arrays)
        groups[directory.name] = {"scores": arrays, "flagged": flagged, "verdicts": verdicts}
    return {"id_scores": id_scores, "id_flagged": [p.ood for p in inside], "groups": groups}


def _auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


def test_ood_check_matches_an_independent_recomputation(
    evaluated: tuple[Path, str], model_dir: Path, tiny_synth_dir: Path, ood_dirs: list[Path]
) -> None:
    check = json.loads((evaluated[0] / "metrics.json").read_text())["ood"]["check"]
    ref = _reference(model_dir, tiny_synth_dir, ood_dirs)
    inside = check["in_distribution"]
    assert inside["images"] == 20 and inside["patients"] == 10
    assert inside["flagged"] == sum(ref["id_flagged"]) > 0
    assert inside["false_flag_rate"] == pytest.approx(np.mean(ref["id_flagged"]))
    # Images clustered by patient: a patient-cluster interval, named by its method.
    found = inside["false_flag_rate_interval"]
    assert found["low"] <= inside["false_flag_rate"] <= found["high"]
    assert found["method"] in (
        "bca-patient-bootstrap",
        "clopper-pearson (count; patient bootstrap degenerate)",
    )
    assert [g["name"] for g in check["groups"]] == ["blank", "noise", "dicom", "phantoms"]
    pooled_scores: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    for group in check["groups"]:
        expected = ref["groups"][group["name"]]
        assert group["images"] == len(expected["flagged"]) > 0
        assert group["flagged"] == sum(expected["flagged"])
        assert group["flag_rate"] == pytest.approx(np.mean(expected["flagged"]))
        assert group["studies"] == len(expected["verdicts"])
        assert group["studies_with_verdict"] == sum(expected["verdicts"])
        for m in METHODS:
            reference = _auroc(ref["id_scores"][m], expected["scores"][m])
            assert group["auroc"][m] == pytest.approx(reference, abs=1e-9), (group["name"], m)
            pooled_scores[m].append(expected["scores"][m])
    assert [g["studies"] for g in check["groups"]][:2] == [2, 2]  # folders in the ZIP are studies too
    phantoms = check["groups"][3]
    assert phantoms["studies"] == 6 and 0 < phantoms["studies_with_verdict"] < 6
    assert phantoms["verdict_fraction"] == pytest.approx(phantoms["studies_with_verdict"] / 6)
    pooled = check["pooled"]
    assert pooled["images"] == sum(g["images"] for g in check["groups"])
    assert pooled["studies_with_verdict"] == sum(g["studies_with_verdict"] for g in check["groups"])
    for m in METHODS:
        reference = _auroc(ref["id_scores"][m], np.concatenate(pooled_scores[m]))
        assert pooled["auroc"][m] == pytest.approx(reference, abs=1e-9)


def test_ood_check_is_in_the_report_and_the_summary(evaluated: tuple[Path, str]) -> None:
    out, printed = evaluated
    html = (out / "report.html").read_text()
    assert "Out-of-distribution check" in html
    for name in ("blank", "noise", "dicom", "all OOD groups", "AUROC combined"):
        assert name in html
    assert "OOD check: in-distribution false flags" in printed
    assert "    noise: 6, 2," in printed


def test_ood_groups_must_exist_and_have_distinct_names(
    model_dir: Path, tiny_synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "evaluate",
        "--model",
        str(model_dir),
        "--data",
        str(tiny_synth_dir),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main([*base, "--ood", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "a" / "blank").mkdir(parents=True)
    (tmp_path / "b" / "blank").mkdir(parents=True)
    assert main([*base, "--ood", str(tmp_path / "a" / "blank"), str(tmp_path / "b" / "blank")]) == 2
    assert "two OOD groups are named 'blank'" in capsys.readouterr().err


def test_ood_block_on_hand_worked_numbers() -> None:
    rule = OodRule((OodSignal("energy", 0.0), OodSignal("mahalanobis", 10.0)))
    id_scores = {"energy": np.array([-4.0, -2.0, 1.0]), "mahalanobis": np.array([2.0, 4.0, 6.0])}
    group = ScoredGroup(
        name="g",
        scores={"energy": np.array([-3.0, 2.0]), "mahalanobis": np.array([12.0, 3.0])},
        flagged=np.array([True, True]),
        signals=[("mahalanobis",), ("energy",)],
        exclusions=["ood", "quality"],
        verdicts=[False, True],
        failed=1,
    )
    empty = ScoredGroup(
        "empty", {"energy": np.zeros(0), "mahalanobis": np.zeros(0)}, np.zeros(0, bool), [], [], []
    )
    check = ood_block(
        rule, id_scores, np.array([False, False, True]), [(), (), ("energy",)], [True], [group, empty]
    )
    inside = check["in_distribution"]
    assert inside["false_flag_rate"] == pytest.approx(1 / 3) and inside["flagged_by"] == {
        "energy": 1,
        "mahalanobis": 0,
    }
    # units: energy 0 - (-2) = 2, Mahalanobis 10 - 4 = 6
    assert check["combined_scale"] == {"energy": 2.0, "mahalanobis": 6.0}
    g = check["groups"][0]
    assert g["flag_rate"] == 1.0 and g["flagged_by"] == {"energy": 1, "mahalanobis": 1}
    assert g["excluded_rate"] == 1.0 and g["quality_flagged"] == 1 and g["failed_images"] == 1
    assert g["studies_with_verdict"] == 1 and g["verdict_fraction"] == 0.5
    # energy: -3 beats -4 only; 2 beats all three -> (1 + 3) / 6
    assert g["auroc"]["energy"] == pytest.approx(4 / 6)
    assert g["auroc"]["mahalanobis"] == pytest.approx(4 / 6)  # 12 beats 3; 3 beats 2
    # combined: in-distribution max(-2, -4/3), max(-1, -1), max(0.5, -2/3) = -4/3, -1, 0.5;
    # group max(-1.5, 1/3), max(1, -7/6) = 1/3, 1 -> both beat -4/3 and -1, 1/3 loses to 0.5
    assert g["auroc"]["combined"] == pytest.approx(5 / 6)
    e = check["groups"][1]
    assert e["images"] == 0 and e["flag_rate"] is None and e["auroc"]["energy"] is None
    assert e["verdict_fraction"] is None
    assert check["pooled"]["images"] == 2 and check["pooled"]["auroc"] == g["auroc"]
