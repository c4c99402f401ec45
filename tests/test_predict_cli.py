"""`fetalcns predict` end to end with the tiny model: JSON shape, overlays, exit codes, privacy."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from app.cli import main
from app.inference.engine import InferenceEngine
from app.inference.pipeline import analyse_paths
from tests.ingest_support import make_us_dataset, phantom, vendor_file, write_dataset

PATIENT_ID = "SECRET-PID-424242"
PATIENT_NAME = "Doe^Secret"


@pytest.fixture()
def study_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "upload"
    study_uid = pydicom.uid.generate_uid()
    for index in range(3):
        ds = make_us_dataset(
            phantom(seed=index), patient_id=PATIENT_ID, patient_name=PATIENT_NAME, study_uid=study_uid
        )
        write_dataset(ds, folder / f"IM{index}.dcm")
    (folder / "report.dcm").write_bytes(vendor_file("test-SR.dcm").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_writes_json_and_overlays(
    study_folder: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    out, overlays = tmp_path / "out" / "result.json", tmp_path / "overlays"
    with caplog.at_level(logging.DEBUG):
        code = main(["predict", str(study_folder), "--model", str(tiny_model_dir), "--json", str(out),
                     "--overlays", str(overlays)])  # fmt: skip
    assert code == 0
    document = json.loads(out.read_text())
    assert set(document) == {"model", "provider", "patients", "rejected"}
    assert {"name", "version", "sha256"} <= set(document["model"])
    assert (
        document["model"]["sha256"]
        == json.loads((tiny_model_dir / "model.json").read_text())["onnx"]["sha256"]
    )
    assert document["provider"] == "CPUExecutionProvider" or "CUDA" in document["provider"]
    (patient,) = document["patients"]
    assert patient["patient_key"].startswith("pt-")
    verdict = patient["verdict"]
    assert {"label", "probabilities", "p_abnormal", "aggregation"} <= set(verdict)
    assert verdict["aggregation"] == "mean" and verdict["n_failed"] == 0
    assert sum(verdict["probabilities"].values()) == pytest.approx(1.0)
    assert verdict["p_abnormal"] == pytest.approx(1 - verdict["probabilities"]["normal"])
    assert len(patient["images"]) == 3
    for image in patient["images"]:
        assert {"source", "frame", "label", "probabilities", "ood", "overlay", "error"} <= set(image)
        assert image["error"] is None
        written = cv2.imread(image["overlay"])
        assert written is not None and written.shape == (240, 320, 3)
        assert PATIENT_ID not in image["overlay"]
    reasons = {Path(r["source"]).name: r["reason"] for r in document["rejected"]}
    assert set(reasons) == {"report.dcm", "notes.txt"}
    printed = capsys.readouterr()
    assert patient["patient_key"] in printed.out and verdict["label"] in printed.out
    everything = printed.out + printed.err + caplog.text + out.read_text()
    assert PATIENT_ID not in everything and "Secret" not in everything


def test_vote_aggregation_is_reported(study_folder: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "vote.json"
    assert main(["predict", str(study_folder), "--model", str(tiny_model_dir), "--aggregate", "vote",
                 "--json", str(out)]) == 0  # fmt: skip
    verdict = json.loads(out.read_text())["patients"][0]["verdict"]
    assert verdict["aggregation"] == "vote" and sum(verdict["votes"].values()) == 3


def test_model_directory_from_the_environment(
    study_folder: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FETALCNS_MODEL_DIR", str(tiny_model_dir))
    assert main(["predict", str(study_folder)]) == 0
    assert "untrained-test-model" in capsys.readouterr().out


def test_missing_input_and_bad_model_exit_non_zero_with_a_message(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(tmp_path / "absent.dcm"), "--model", str(tiny_model_dir)]) == 2
    assert "not found" in capsys.readouterr().err
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), phantom())
    assert main(["predict", str(image), "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err
    assert "cannot load the model" in err and "Traceback" not in err


def test_only_rejected_files_still_exit_zero(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(vendor_file("test-SR.dcm")), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "structured report" in out and "no usable images" in out


def test_all_blank_study_is_indeterminate(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "blank"
    folder.mkdir()
    for index in range(2):
        cv2.imwrite(str(folder / f"{index}.png"), np.full((100, 120), 40 * index, np.uint8))
    report = analyse_paths([folder], InferenceEngine(tiny_model_dir, device="cpu"))
    document = report.to_json()
    verdict = document["patients"][0]["verdict"]
    assert verdict["label"] == "indeterminate" and verdict["p_abnormal"] is None
    assert verdict["n_excluded"] == 2 and verdict["n_total"] == 2
    assert verdict["excluded_by_reason"] == {"quality": 2}
    assert verdict["reason"] == "all 2 image(s) were left out: 2 blank or of too poor quality"
    assert all(image["excluded"] for image in document["patients"][0]["images"])


def test_pipeline_keeps_originals_and_everything_a_service_stores(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    path = write_dataset(make_us_dataset(phantom(), ImageComments="GA 21w2d"), tmp_path / "s" / "a.dcm")
    engine = InferenceEngine(tiny_model_dir, device="cpu")
    report = analyse_paths([path], engine)
    patient = report.patients[0]
    image, prediction = patient.images[0], patient.predictions[0]
    before = image.pixels.copy()
    report.write_overlays(tmp_path / "ov")
    np.testing.assert_array_equal(image.pixels, before)
    np.testing.assert_array_equal(image.pixels[:, :, 0], phantom())
    assert prediction.cam.shape == image.pixels.shape[:2]
    assert set(prediction.probability_dict()) == set(engine.classes)
    assert patient.study.gestational_age_weeks == pytest.approx(21 + 2 / 7, abs=0.01)
    assert patient.study.patient_id == "PID-12345"  # kept for storage, never logged
    assert image.metadata["transfer_syntax"] == "Explicit VR Little Endian"


def test_predict_gives_a_verdict_from_the_good_images_when_one_is_corrupt(
    study_folder: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A fourth image of the same study whose pixel data was cut short in transfer, and an image
    # export truncated halfway: each must be reported alone while the three good ones decide.
    good = pydicom.dcmread(study_folder / "IM0.dcm")
    corrupt = make_us_dataset(
        phantom(seed=9), patient_id=PATIENT_ID, patient_name=PATIENT_NAME, study_uid=good.StudyInstanceUID
    )
    corrupt.PixelData = corrupt.PixelData[: len(corrupt.PixelData) // 3]
    write_dataset(corrupt, study_folder / "IM3.dcm")
    ok, png = cv2.imencode(".png", phantom(seed=10))
    assert ok
    (study_folder / "export.png").write_bytes(png.tobytes()[: len(png) // 2])

    out = tmp_path / "result.json"
    assert main(["predict", str(study_folder), "--model", str(tiny_model_dir), "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    (patient,) = [p for p in document["patients"] if len(p["images"]) >= 3]
    verdict = patient["verdict"]
    classes = json.loads((tiny_model_dir / "model.json").read_text())["classes"]
    assert verdict["label"] in classes
    assert abs(sum(verdict["probabilities"].values()) - 1) < 1e-5
    analysed = [image for image in patient["images"] if not image.get("error")]
    assert len(analysed) == 3
    reported = {Path(r["source"]).name: r["reason"] for r in document["rejected"]}
    reported |= {
        Path(image["source"]).name: image["error"] for image in patient["images"] if image.get("error")
    }
    assert {"IM3.dcm", "export.png"} <= set(reported), reported
    assert all(reason for reason in reported.values())
