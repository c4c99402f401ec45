"""`fetalcns evaluate` end to end on the tiny untrained model and a tiny synthetic set."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from training_support import tiny_synth_dir

from app.cli import main
from app.evaluation.perturb import ROBUSTNESS_SET
from app.inference.engine import InferenceEngine
from app.ingest.types import IngestedImage
from app.modelcard import load_model_card
from app.training.data import discover_samples, read_rgb

__all__ = ["tiny_synth_dir"]


@pytest.fixture(scope="module")
def evaluated(
    tiny_model_dir: Path, tiny_synth_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(model directory, report directory) after `fetalcns evaluate --update-card`."""
    model = tmp_path_factory.mktemp("model") / "tiny"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path_factory.mktemp("report")
    command = ["evaluate", "--model", str(model), "--data", str(tiny_synth_dir), "--out", str(out)]
    assert main([*command, "--bootstrap", "20", "--update-card"]) == 0
    return model, out


def test_metrics_json_has_every_reported_section(evaluated: tuple[Path, Path], tiny_synth_dir: Path) -> None:
    metrics = json.loads((evaluated[1] / "metrics.json").read_text())
    assert metrics["data"]["patients"] == 10 and metrics["data"]["images"] == 20
    assert metrics["data"]["synthetic"] is True
    for block in ("image", "patient_mean"):
        assert len(metrics[block]["confusion_matrix"]) == 5
        per_class = metrics[block]["per_class"]["normal"]
        assert set(per_class) >= {"sensitivity", "specificity", "ppv", "npv", "f1"}
        assert {"macro", "micro"} <= set(metrics[block]["auroc_anomaly_classes"])
        assert 0.0 <= metrics[block]["ece"] <= 1.0
    assert sum(map(sum, metrics["patient_vote"]["confusion_matrix"])) == 10
    assert set(metrics["gestational_age"]) == {"<20 weeks", "20-28 weeks", ">28 weeks"}
    assert sum(g["patients"] for g in metrics["gestational_age"].values()) == 10
    # Of the 8 anomaly patients × 2 images, only those whose plane shows the lesion have a
    # non-empty mask (app/synth/planes.py); the pointing game skips the others.
    assert metrics["localisation"]["images"] == _visible_lesion_images(tiny_synth_dir) > 0
    assert 0.0 <= metrics["localisation"]["pointing_game_true_class"] <= 1.0
    interval = metrics["confidence_intervals"]["patient_accuracy_mean"]
    assert interval["low"] <= metrics["summary"]["patient_accuracy_mean"] <= interval["high"]
    # Patients are independent: the exact binomial interval on the count, whatever the score.
    assert interval["method"] == "clopper-pearson"
    for name, found in metrics["confidence_intervals"].items():
        assert found is None or found["method"] in metrics["interval_methods"], name
    sensitivity = metrics["patient_mean"]["per_class"]["normal"]["intervals"]["sensitivity"]
    assert sensitivity["method"] == "clopper-pearson"
    image_methods = {v["method"] for v in metrics["image"]["per_class"]["normal"]["intervals"].values() if v}
    assert image_methods <= set(metrics["interval_methods"]) and image_methods


def _visible_lesion_images(data_dir: Path) -> int:
    with (data_dir / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["class"] != "normal"]
    return sum(bool(np.asarray(Image.open(data_dir / row["mask"])).any()) for row in rows)


def test_report_html_links_its_figures(evaluated: tuple[Path, Path]) -> None:
    report = evaluated[1]
    html = (report / "report.html").read_text()
    assert "synthetic phantom" in html
    for figure in ("confusion.png", "roc.png", "reliability.png", "cam_examples.png"):
        assert f"src='{figure}'" in html
        assert (report / figure).read_bytes().startswith(b"\x89PNG")
    assert "SYN7-" not in html  # patient identifiers stay out of reports
    assert "CI method" in html and "clopper-pearson" in html
    assert "<h2>Calibration</h2>" not in html  # the tiny model's card has no temperature


def test_update_card_copies_metrics_and_keeps_the_card_valid(evaluated: tuple[Path, Path]) -> None:
    model, report = evaluated
    card = load_model_card(model)  # verifies the sha256 still matches
    metrics = json.loads((report / "metrics.json").read_text())
    assert card.raw["metrics"]["summary"] == metrics["summary"]


def test_missing_model_gives_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_patients_without_a_verdict_count_as_not_correct(
    tiny_model_dir: Path, tiny_synth_dir: Path, tmp_path: Path
) -> None:
    """Each synthetic patient has 2 images; a card asking for 3 leaves every patient indeterminate."""
    from app.evaluation.runner import evaluate_model

    model = tmp_path / "strict"
    shutil.copytree(tiny_model_dir, model)
    card = json.loads((model / "model.json").read_text())
    card["verdict"] = {"min_usable_images": 3}
    (model / "model.json").write_text(json.dumps(card))
    metrics = evaluate_model(model, tiny_synth_dir, n_bootstrap=5).metrics
    for block in ("patient_mean", "patient_vote"):
        assert metrics[block]["indeterminate"]["patients"] == 10
        assert sum(metrics[block]["indeterminate"]["by_true_class"].values()) == 10
        assert metrics[block]["accuracy"] == 0.0
        assert all(c["sensitivity"] in (0.0, None) for c in metrics[block]["per_class"].values())
    assert metrics["summary"]["patient_indeterminate_fraction"] == 1.0
    assert metrics["verdict_rule"] == {"min_usable_images": 3, "max_excluded_fraction": 0.5}
    # The images themselves are still scored: image-level accuracy is not affected by the gate.
    assert metrics["image"]["accuracy"] == metrics["summary"]["image_accuracy"]


def test_default_evaluation_has_no_robustness_section(evaluated: tuple[Path, Path]) -> None:
    metrics = json.loads((evaluated[1] / "metrics.json").read_text())
    assert "robustness" not in metrics
    assert "<h2>Robustness</h2>" not in (evaluated[1] / "report.html").read_text()


def test_robustness_flag_scores_each_change(
    tiny_model_dir: Path, tiny_synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    command = ["evaluate", "--model", str(tiny_model_dir), "--data", str(tiny_synth_dir), "--out", str(out)]
    assert main([*command, "--bootstrap", "5", "--robustness"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    block = metrics["robustness"]
    names = [row["name"] for row in block["rows"]]
    assert names == ["none", *(p.name for p in ROBUSTNESS_SET)]
    assert block["patients"] == 10 and block["images"] == 20
    none = block["rows"][0]
    assert none["image_accuracy"] == pytest.approx(metrics["summary"]["image_accuracy"])
    assert none["patient_accuracy_mean"] == pytest.approx(metrics["summary"]["patient_accuracy_mean"])
    assert none["patient_accuracy_vote"] == pytest.approx(metrics["summary"]["patient_accuracy_vote"])

    # The mirrored row, recomputed independently: numpy's mirror through the serving engine, and
    # the patient verdict as the mean of each patient's probability vectors.
    engine = InferenceEngine(tiny_model_dir)
    samples = discover_samples(tiny_synth_dir, engine.classes)
    images = [
        IngestedImage(
            source="x", frame=None, pixels=np.fliplr(read_rgb(s.path)).copy(), scan_box=None, sha256=""
        )
        for s in samples
    ]
    predictions = engine.predict(images)
    probabilities = np.stack([p.probabilities for p in predictions])
    flagged = np.array([p.ood for p in predictions])
    labels = np.array([s.label for s in samples])
    flip = next(row for row in block["rows"] if row["name"] == "flip")
    assert flip["image_accuracy"] == pytest.approx(float((probabilities.argmax(1) == labels).mean()))
    patients = sorted({s.patient for s in samples})
    right = []
    for patient in patients:
        rows = [i for i, s in enumerate(samples) if s.patient == patient]
        right.append(probabilities[rows].mean(axis=0).argmax() == labels[rows[0]])
    assert flip["patient_accuracy_mean"] == pytest.approx(float(np.mean(right)))
    # The served verdict, written out from the card's rule: the unflagged images' mean, when at
    # least min_usable_images are left and no more than max_excluded_fraction is flagged.
    rule = engine.card.verdict_rule
    served, undecided = [], []
    for patient in patients:
        rows = [i for i, s in enumerate(samples) if s.patient == patient]
        used = [i for i in rows if not flagged[i]]
        decided = len(used) >= rule.min_usable_images and (
            len(rows) - len(used) <= rule.max_excluded_fraction * len(rows)
        )
        undecided.append(not decided)
        served.append(decided and probabilities[used].mean(axis=0).argmax() == labels[rows[0]])
    assert flip["patient_accuracy_served"] == pytest.approx(float(np.mean(served)))
    assert flip["patient_indeterminate_fraction"] == pytest.approx(float(np.mean(undecided)))

    html = (out / "report.html").read_text()
    assert "<h2>Robustness</h2>" in html and "JPEG round trip, quality 30" in html
    assert "robustness (image accuracy, patient accuracy, served patient accuracy" in capsys.readouterr().out


def test_sites_are_reported_one_by_one_with_exact_intervals(
    tiny_model_dir: Path, tiny_synth_dir: Path, tmp_path: Path
) -> None:
    """Two sites of five patients each: each site's patient accuracy, its exact interval (scipy's
    binomtest as the reference), and counts that add up to the whole evaluation."""
    from scipy.stats import binomtest

    from app.evaluation.runner import evaluate_model

    data = tmp_path / "two-sites"
    shutil.copytree(tiny_synth_dir, data)
    with (data / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [c for c in reader.fieldnames or () if c != "site"] + ["site"]
        rows = list(reader)
    patients = sorted({row["patient_id"] for row in rows})
    site_of = {p: ("X" if i % 2 else "Y") for i, p in enumerate(patients)}
    with (data / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "site": site_of[row["patient_id"]]} for row in rows)
    metrics = evaluate_model(tiny_model_dir, data, n_bootstrap=5).metrics
    sites = metrics["site"]
    assert set(sites) == {"X", "Y"}
    assert [sites[s]["patients"] for s in ("X", "Y")] == [5, 5]
    assert sum(s["images"] for s in sites.values()) == metrics["data"]["images"]
    right = {s: round(sites[s]["patient_accuracy"] * 5) for s in sites}
    assert sum(right.values()) / 10 == pytest.approx(metrics["summary"]["patient_accuracy_mean"])
    for site, block in sites.items():
        reference = binomtest(right[site], 5).proportion_ci(0.95, method="exact")
        assert block["patient_accuracy_ci"]["low"] == pytest.approx(reference.low, abs=1e-9)
        assert block["patient_accuracy_ci"]["high"] == pytest.approx(reference.high, abs=1e-9)
        assert block["patient_accuracy_ci"]["method"] == "clopper-pearson"
