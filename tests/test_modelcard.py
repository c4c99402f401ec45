"""The model card owns its vocabulary: a broken card fails at load time, naming the field.

Every case corrupts one field of a copy of the bundled demo card (next to a copy of its
model.onnx) and expects ModelCardError, never KeyError, TypeError or AssertionError.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.inference.engine import InferenceEngine
from app.inference.runtime import EngineError
from app.inference.scores import OOD_SCORES, energy_score
from app.modelcard import (
    AGGREGATIONS,
    CAM_TARGETS,
    OOD_FEATURE_METHODS,
    OOD_METHODS,
    ModelCardError,
    OodRule,
    OodSignal,
    VerdictRule,
    load_model_card,
    sha256_of,
)
from app.preprocess import CROPS, INTERPOLATIONS, PreprocessSpec, resize, scan_box
from tests.conftest import DEMO_MODEL_DIR
from tests.ingest_support import phantom

DROP = object()
# A valid calibration block's start, for the cases that break one of its other fields.
T = '{"method": "temperature", "temperature": 1.5'

# (what to change: a key path, the new value or DROP), the field the message must name.
CORRUPTIONS: list[tuple[tuple[str | int, ...], Any, str]] = [
    (("classes",), DROP, "classes"),
    (("thresholds",), DROP, "thresholds"),
    (("schema_version",), 2, "schema_version"),
    (("schema_version",), "1", "schema_version"),
    (("name",), "", "name"),
    (("version",), 2, "version"),
    (("architecture",), None, "architecture"),
    (("intended_use",), ["research"], "intended_use"),
    (("classes",), "normal", "classes"),
    (("classes",), ["normal"], "classes"),
    (("classes",), ["normal", "Anencephaly", "normal"], "classes"),
    (("classes", 0), 7, "classes[0]"),
    (("classes", 1), " ", "classes[1]"),
    (("normal_class",), "Normal", "normal_class"),
    (("normal_class",), None, "normal_class"),
    (("input",), [224, 224], "input"),
    (("input", "size"), DROP, "input.size"),
    (("input", "size"), [224], "input.size"),
    (("input", "size"), [224, 0], "input.size"),
    (("input", "size"), [224.5, 224], "input.size"),
    (("input", "size"), [True, 224], "input.size"),
    (("input", "mean"), [0.5, 0.5], "input.mean"),
    (("input", "mean", 0), "0.485", "input.mean[0]"),
    (("input", "mean", 2), math.nan, "input.mean[2]"),
    (("input", "std"), DROP, "input.std"),
    (("input", "std", 1), 0.0, "input.std"),
    (("input", "std"), [0.2, 0.2, 0.2, 0.2], "input.std"),
    (("input", "crop"), "centre", "input.crop"),
    (("input", "interpolation"), "nearest", "input.interpolation"),
    (("input", "color_mode"), "BGR", "input.color_mode"),
    (("input", "resize"), "letterbox", "input.resize"),
    (("input", "layout"), "NHWC", "input.layout"),
    (("input", "dtype"), "float16", "input.dtype"),
    (("input", "name"), "", "input.name"),
    (("outputs",), "logits", "outputs"),
    (("outputs", "cam"), ["N", 5], "outputs.cam"),
    (("outputs", "cam", "target"), "max", "outputs.cam.target"),
    (("aggregation",), "median", "aggregation"),
    (("thresholds",), 0.5, "thresholds"),
    (("thresholds", "abnormal"), 1.5, "thresholds.abnormal"),
    (("thresholds", "abnormal"), "0.5", "thresholds.abnormal"),
    (("thresholds", "ood"), DROP, "thresholds.ood"),
    (("thresholds", "ood"), -4.3, "thresholds.ood"),
    (("thresholds", "ood", "method"), "softmax", "thresholds.ood.method"),
    (("thresholds", "ood", "method"), DROP, "thresholds.ood.method"),
    (("thresholds", "ood", "threshold"), "-4.3", "thresholds.ood.threshold"),
    (("thresholds", "ood", "threshold"), None, "thresholds.ood.threshold"),
    (("thresholds", "ood", "threshold"), DROP, "thresholds.ood.threshold"),
    (("thresholds", "ood", "threshold"), math.inf, "thresholds.ood.threshold"),
    (("thresholds", "ood", "threshold"), False, "thresholds.ood.threshold"),
    (("thresholds", "ood", "percentile"), 150, "thresholds.ood.percentile"),
    (("thresholds", "ood", "calibrated_on"), 238, "thresholds.ood.calibrated_on"),
    (("thresholds", "ood", "false_flag_rate"), 1.5, "thresholds.ood.false_flag_rate"),
    (("thresholds", "ood", "rule"), "all", "thresholds.ood.rule"),
    (("thresholds", "ood", "expected_false_flag_rate"), -0.1, "thresholds.ood.expected_false_flag_rate"),
    (("thresholds", "ood", "calibration"), "seed 7", "thresholds.ood.calibration"),
    (("thresholds", "ood", "calibration", "patients"), -1, "thresholds.ood.calibration.patients"),
    (("thresholds", "ood", "calibration", "images"), "463", "thresholds.ood.calibration.images"),
    (("thresholds", "ood", "combined_with"), {"method": "mahalanobis"}, "thresholds.ood.combined_with"),
    (("thresholds", "ood", "combined_with", 0), "mahalanobis", "thresholds.ood.combined_with[0]"),
    (("thresholds", "ood", "combined_with", 0, "method"), "knn", "thresholds.ood.combined_with[0].method"),
    (("thresholds", "ood", "combined_with", 0, "method"), "energy", "thresholds.ood.combined_with"),
    (
        ("thresholds", "ood", "combined_with", 0, "threshold"),
        DROP,
        "thresholds.ood.combined_with[0].threshold",
    ),
    (
        ("thresholds", "ood", "combined_with", 0, "percentile"),
        -1,
        "thresholds.ood.combined_with[0].percentile",
    ),
    (("thresholds", "ood", "combined_with", 0, "shrinkage"), 2, "thresholds.ood.combined_with[0].shrinkage"),
    (
        ("thresholds", "ood", "combined_with", 0, "false_flag_rate"),
        "1%",
        "thresholds.ood.combined_with[0].false_flag_rate",
    ),
    (
        ("thresholds", "ood", "combined_with", 0, "parameters"),
        DROP,
        "thresholds.ood.combined_with[0].parameters",
    ),
    (
        ("thresholds", "ood", "combined_with", 0, "parameters", "file"),
        "../ood.npz",
        "thresholds.ood.combined_with[0].parameters.file",
    ),
    (
        ("thresholds", "ood", "combined_with", 0, "parameters", "sha256"),
        "7cba",
        "thresholds.ood.combined_with[0].parameters.sha256",
    ),
    (("provenance",), None, "provenance"),
    (("provenance", "synthetic"), "yes", "provenance.synthetic"),
    (("metrics",), [], "metrics"),
    (("onnx",), "model.onnx", "onnx"),
    (("onnx", "sha256"), "26d335a5", "onnx.sha256"),
    (("onnx", "sha256"), DROP, "onnx.sha256"),
    (("onnx", "file"), "../fetal-cns-demo/model.onnx", "onnx.file"),
    (("onnx", "file"), "", "onnx.file"),
    (("clinical_use",), "false", "clinical_use"),
    (("clinical_use_reason",), "", "clinical_use_reason"),
    (("verdict",), [2, 0.5], "verdict"),
    (("verdict",), {"min_usable_images": 0}, "verdict.min_usable_images"),
    (("verdict",), {"min_usable_images": 2.0}, "verdict.min_usable_images"),
    (("verdict",), {"min_usable_images": True}, "verdict.min_usable_images"),
    (("verdict",), {"max_excluded_fraction": 1.5}, "verdict.max_excluded_fraction"),
    (("verdict",), {"max_excluded_fraction": "0.5"}, "verdict.max_excluded_fraction"),
    (("verdict",), {"max_ood_fraction": 0.5}, "verdict"),
    (("cine",), [16], "cine"),
    (("cine",), {"max_analysed_frames": 0}, "cine.max_analysed_frames"),
    (("cine",), {"max_analysed_frames": 8.0}, "cine.max_analysed_frames"),
    (("cine",), {"loop_weight": "per_loop"}, "cine.loop_weight"),
    (("cine",), {"frames": 8}, "cine"),
    (("calibration",), [1.5], "calibration"),
    (("calibration",), {"method": "platt", "temperature": 1.5}, "calibration.method"),
    (("calibration",), {"method": "temperature"}, "calibration.temperature"),
    (("calibration",), {"method": "temperature", "temperature": 0}, "calibration.temperature"),
    (("calibration",), {"method": "temperature", "temperature": -2.0}, "calibration.temperature"),
    (("calibration",), {"method": "temperature", "temperature": "1.5"}, "calibration.temperature"),
    (("calibration",), {"method": "temperature", "temperature": math.inf}, "calibration.temperature"),
    (("calibration",), json.loads(T + ', "nll_before": "low"}'), "calibration.nll_before"),
    (("calibration",), json.loads(T + ', "nll_after": -1}'), "calibration.nll_after"),
    (("calibration",), json.loads(T + ', "ece_before": null}'), "calibration.ece_before"),
    (("calibration",), json.loads(T + ', "ece_after": -0.1}'), "calibration.ece_after"),
    (("calibration",), json.loads(T + ', "fitted_on": []}'), "calibration.fitted_on"),
    (("calibration",), json.loads(T + ', "fitted_on": {"patients": 0}}'), "calibration.fitted_on.patients"),
    (("calibration",), json.loads(T + ', "fitted_on": {"images": 2.5}}'), "calibration.fitted_on.images"),
]


@pytest.fixture(scope="module")
def demo_card() -> dict[str, Any]:
    if not (DEMO_MODEL_DIR / "model.json").is_file():
        pytest.skip("the bundled demo model models/fetal-cns-demo is missing")
    return json.loads((DEMO_MODEL_DIR / "model.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def onnx_copy(tmp_path_factory: pytest.TempPathFactory, demo_card: dict[str, Any]) -> Path:
    target = tmp_path_factory.mktemp("demo-onnx") / "model.onnx"
    shutil.copyfile(DEMO_MODEL_DIR / "model.onnx", target)
    return target


def model_dir_with(tmp_path: Path, onnx: Path, card: object) -> Path:
    """A model directory: the card as given, beside a copy of the demo model.onnx (and ood.npz)."""
    directory = tmp_path / "model"
    directory.mkdir()
    try:
        os.link(onnx, directory / "model.onnx")  # same bytes, without copying 5 MB per case
    except OSError:
        shutil.copyfile(onnx, directory / "model.onnx")
    for name in ("ood.npz", "ood_views.npz"):
        if (DEMO_MODEL_DIR / name).is_file():
            shutil.copyfile(DEMO_MODEL_DIR / name, directory / name)
    (directory / "model.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return directory


def corrupted(card: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    card = json.loads(json.dumps(card))
    parent: Any = card
    for key in path[:-1]:
        parent = parent[key]
    if value is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return card


@pytest.mark.parametrize(("path", "value", "field"), CORRUPTIONS, ids=lambda x: repr(x)[:40])
def test_a_corrupted_field_fails_at_load_naming_the_field(
    demo_card: dict[str, Any], onnx_copy: Path, tmp_path: Path, path: tuple, value: Any, field: str
) -> None:
    directory = model_dir_with(tmp_path, onnx_copy, corrupted(demo_card, path, value))
    with pytest.raises(ModelCardError) as raised:
        load_model_card(directory)
    message = str(raised.value)
    assert message.startswith("model.json: ") and field in message, message


def test_every_validated_field_has_a_corruption_case() -> None:
    named = {field.split("[")[0] for _, _, field in CORRUPTIONS}
    named |= {field for _, _, field in CORRUPTIONS if field.startswith("thresholds.ood.combined_with")}
    inputs = {
        "size",
        "mean",
        "std",
        "crop",
        "interpolation",
        "color_mode",
        "resize",
        "layout",
        "dtype",
        "name",
    }
    ood = {"method", "threshold", "percentile", "calibrated_on", "false_flag_rate", "rule"}
    ood |= {"expected_false_flag_rate", "calibration", "calibration.patients", "calibration.images"}
    signal = {"method", "threshold", "percentile", "shrinkage", "false_flag_rate", "parameters"}
    signal |= {"parameters.file", "parameters.sha256"}
    expected = (
        {"classes", "normal_class", "aggregation", "schema_version", "name", "version", "architecture"}
        | {"intended_use", "clinical_use", "clinical_use_reason", "provenance.synthetic", "metrics"}
        | {"input." + key for key in inputs}
        | {"outputs.cam.target", "thresholds.abnormal", "onnx.sha256", "onnx.file"}
        | {"thresholds.ood." + key for key in ood}
        | {"verdict.min_usable_images", "verdict.max_excluded_fraction"}
        | {"cine.max_analysed_frames", "cine.loop_weight"}
        | {"calibration", "calibration.method", "calibration.temperature", "calibration.fitted_on"}
        | {"calibration." + key for key in ("nll_before", "nll_after", "ece_before", "ece_after")}
        | {"calibration.fitted_on.patients", "calibration.fitted_on.images"}
        | {"thresholds.ood.combined_with"}
        | {"thresholds.ood.combined_with[0]." + key for key in signal}
    )
    assert expected <= named, expected - named


def test_a_card_that_is_not_an_object_or_not_utf8_is_refused(onnx_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match=r"model\.json: the card must be an object"):
        load_model_card(model_dir_with(tmp_path, onnx_copy, ["name", "version"]))
    (tmp_path / "model" / "model.json").write_bytes(b'{"name": "\xff"}')
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_model_card(tmp_path / "model")


def test_the_engine_reports_a_broken_card_in_words(
    demo_card: dict[str, Any], onnx_copy: Path, tmp_path: Path
) -> None:
    broken = corrupted(demo_card, ("thresholds", "ood", "threshold"), "high")
    with pytest.raises(EngineError, match=r"cannot load the model: model\.json: thresholds\.ood\.threshold"):
        InferenceEngine(model_dir_with(tmp_path, onnx_copy, broken), device="cpu")


def test_optional_fields_may_be_absent(demo_card: dict[str, Any], onnx_copy: Path, tmp_path: Path) -> None:
    card = demo_card
    for path in [
        ("input", "crop"),
        ("input", "interpolation"),
        ("outputs", "cam", "target"),
        ("onnx", "file"),
    ]:
        card = corrupted(card, path, DROP)
    loaded = load_model_card(model_dir_with(tmp_path, onnx_copy, card))
    assert loaded.preprocess == PreprocessSpec()  # the demo card's values are the defaults
    assert loaded.cam_target == "logit" and loaded.onnx_path.name == "model.onnx"


def test_the_bundled_card_loads_with_its_sha256(demo_card: dict[str, Any]) -> None:
    card = load_model_card(DEMO_MODEL_DIR, verify_sha=True)
    assert sha256_of(card.onnx_path) == card.sha256 == demo_card["onnx"]["sha256"]
    assert card.aggregation in AGGREGATIONS and card.cam_target in CAM_TARGETS
    assert card.ood_rule.method == "energy"
    assert card.ood_rule.threshold == demo_card["thresholds"]["ood"]["threshold"]


def test_the_verdict_rule_is_optional_with_defaults(
    demo_card: dict[str, Any], onnx_copy: Path, tmp_path: Path
) -> None:
    assert "verdict" not in demo_card  # the bundled card predates the block and stays valid
    assert load_model_card(DEMO_MODEL_DIR).verdict_rule == VerdictRule(2, 0.5)
    partial = load_model_card(
        model_dir_with(tmp_path, onnx_copy, {**demo_card, "verdict": {"min_usable_images": 3}})
    )
    assert partial.verdict_rule == VerdictRule(min_usable_images=3, max_excluded_fraction=0.5)


def test_the_calibration_is_optional_and_its_temperature_defaults_to_one(
    demo_card: dict[str, Any], onnx_copy: Path, tmp_path: Path
) -> None:
    plain = {key: value for key, value in demo_card.items() if key != "calibration"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load_model_card(model_dir_with(tmp_path / "a", onnx_copy, plain)).temperature == 1.0
    block = {"method": "temperature", "temperature": 1.75, "fitted_on": {"data": "held", "patients": 3}}
    scaled = load_model_card(model_dir_with(tmp_path / "b", onnx_copy, {**plain, "calibration": block}))
    assert scaled.temperature == 1.75


def test_ood_rule_flags_scores_above_the_threshold_and_nan() -> None:
    rule = OodRule.single("energy", -4.3)
    assert rule.flags(-4.0) and not rule.flags(-4.3) and not rule.flags(-9.0)
    assert rule.flags(math.nan)


def test_every_ood_method_has_a_score() -> None:
    # Logit scores live in OOD_SCORES; feature signals read the features output and a parameters file.
    assert set(OOD_SCORES) | set(OOD_FEATURE_METHODS) == set(OOD_METHODS)
    logits = np.array([[2.0, -1.0, 0.5]])
    # Energy by hand: -log(sum(exp(logits))).
    assert OOD_SCORES["energy"](logits)[0] == pytest.approx(-math.log(sum(math.exp(v) for v in logits[0])))
    assert OOD_SCORES["energy"] is energy_score


def test_every_preprocessing_word_names_working_code() -> None:
    image = np.repeat(phantom()[:, :, None], 3, axis=2)
    for interpolation in INTERPOLATIONS:
        assert resize(image, (32, 48), interpolation).shape == (32, 48, 3)
    for crop in CROPS:
        box = scan_box(image, PreprocessSpec(crop=crop))
        assert box == (0, 240, 0, 320) if crop == "none" else box != (0, 240, 0, 320)
    with pytest.raises(ValueError, match="crop"):
        PreprocessSpec(crop="centre")
    with pytest.raises(ValueError, match="interpolation"):
        PreprocessSpec(interpolation="nearest")


def test_a_card_with_only_the_energy_signal_still_loads(
    demo_card: dict[str, Any], onnx_copy: Path, tmp_path: Path
) -> None:
    legacy = {"method": "energy", "threshold": -4.3, "percentile": 99.0, "calibrated_on": "238 images"}
    card = corrupted(demo_card, ("thresholds", "ood"), legacy)
    loaded = load_model_card(model_dir_with(tmp_path, onnx_copy, card))
    assert loaded.ood_rule == OodRule.single("energy", -4.3)
    assert loaded.ood_rule.methods == ("energy",)
    engine = InferenceEngine(loaded.directory, device="cpu")
    assert engine.ood_rule.methods == ("energy",)


def test_the_demo_card_combines_energy_and_mahalanobis(demo_card: dict[str, Any]) -> None:
    card = load_model_card(DEMO_MODEL_DIR)
    rule = card.ood_rule
    assert rule.methods == ("energy", "mahalanobis", "view_scope") and rule.combine == "any"
    ood = demo_card["thresholds"]["ood"]
    assert ood["expected_false_flag_rate"] <= 0.03
    # Calibrated on a generator seed that neither trained (1) nor evaluated (2) the model.
    assert ood["calibration"]["generator"]["seed"] not in (
        demo_card["provenance"]["generator"]["seed"],
        demo_card["metrics"]["evaluated_on"]["generator"]["seed"],
    )
    assert card.ood_parameters_path("mahalanobis") == DEMO_MODEL_DIR / "ood.npz"
    with pytest.raises(ModelCardError, match="no parameters file"):
        card.ood_parameters_path("energy")


def test_ood_rule_flags_when_any_signal_exceeds_its_threshold() -> None:
    rule = OodRule((OodSignal("energy", -4.0), OodSignal("mahalanobis", 10.0, "ood.npz")))
    assert rule.fired({"energy": -5.0, "mahalanobis": 3.0}) == ()
    assert rule.fired({"energy": -3.0, "mahalanobis": 3.0}) == ("energy",)
    assert rule.fired({"energy": -5.0, "mahalanobis": 11.0}) == ("mahalanobis",)
    assert rule.flags({"energy": -3.0, "mahalanobis": 11.0})
    # A missing or NaN score counts as flagged; a bare number is the primary (energy) score.
    assert rule.fired({"energy": -5.0}) == ("mahalanobis",)
    assert rule.flags({"energy": math.nan, "mahalanobis": 3.0})
    assert rule.flags(-3.0) and not rule.flags(-5.0)
    assert (rule.method, rule.threshold) == ("energy", -4.0)


def test_ood_parameters_must_exist_and_match_their_sha256(
    demo_card: dict[str, Any], onnx_copy: Path, tmp_path: Path
) -> None:
    directory = model_dir_with(tmp_path, onnx_copy, demo_card)
    with (directory / "ood.npz").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelCardError, match=r"ood\.npz does not match the sha256"):
        load_model_card(directory)
    (directory / "ood.npz").unlink()
    with pytest.raises(ModelCardError, match=r"OOD parameters file .* is missing"):
        load_model_card(directory)
