"""The model card, models/NAME/model.json: the one source of truth about a model.

Export writes it; serving, evaluation and the web app read it. Class names,
preprocessing, thresholds and provenance come from here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from app.preprocess import (
    COLOR_MODES,
    CROPS,
    DTYPES,
    INTERPOLATIONS,
    LAYOUTS,
    RESIZE_MODES,
    PreprocessSpec,
)

CARD_FILE = "model.json"
ONNX_FILE = "model.onnx"
# Numeric precisions a model may be served in: the exported fp32 graph, and the variants
# `fetalcns export --quantize` adds beside it (onnx.variants in the card), each with its parity.
PRECISIONS = ("fp32", "int8", "fp16")
SCHEMA_VERSION = 1

REQUIRED_KEYS = (
    "schema_version",
    "name",
    "version",
    "architecture",
    "classes",
    "normal_class",
    "input",
    "outputs",
    "aggregation",
    "thresholds",
    "provenance",
    "metrics",
    "onnx",
    "intended_use",
    "clinical_use",
    "clinical_use_reason",
)


# What each class heatmap (the `cam` output) explains, recorded as outputs.cam.target.
# "logit": Grad-CAM of the class logit y_c (Selvaraju et al.). "normal-contrast": Grad-CAM of the
# class's log-odds against normal, y_c - y_normal (for normal itself, y_normal minus the mean
# anomaly logit). Cards written before the choice existed mean "logit". New exports default to
# "logit", the method of Qi et al. (Grad-CAM of each class's own score); the contrast stays an option.
CAM_TARGETS = ("logit", "normal-contrast")
DEFAULT_CAM_TARGET = "logit"

# How per-image probabilities become the patient verdict (app.inference.aggregate).
AGGREGATIONS = ("mean", "vote", "geomean")

# The card's optional "verdict" block (app.inference.aggregate): when a patient verdict may be
# given at all. Absent keys take these defaults, so cards written before the block stay valid.
DEFAULT_MIN_USABLE_IMAGES = 2
DEFAULT_MAX_EXCLUDED_FRACTION = 0.5

# The OOD signals a card may threshold; higher always means less familiar.
# "energy": -logsumexp(logits) (Liu et al. 2020), app.inference.scores.energy_score.
# "mahalanobis": distance of the pooled features (the `features` output) to the nearest class
# mean under a tied covariance (Lee et al. 2018), app.inference.mahalanobis; its fitted means and
# precision live in a parameters file beside model.onnx whose sha256 the card records.
# "view_scope": distance to the nearest CNS class mean minus distance to the nearest mean of the
# non-CNS fetal views (abdomen, femur, heart, face) fitted at calibration, under the same tied
# precision (app.inference.mahalanobis.view_scope_score): an ultrasound view the model was not
# trained on. Its means and precision live in their own parameters file.
OOD_METHODS = ("energy", "mahalanobis", "view_scope")
# Signals that read the `features` output and need a parameters file.
OOD_FEATURE_METHODS = ("mahalanobis", "view_scope")
# How signals combine. "any": flag an image when any signal exceeds its threshold (or is NaN).
OOD_RULES = ("any",)

# The card's optional "calibration" block: how logits become probabilities. "temperature":
# softmax(logits / T), one T > 0 fitted on held-out patients (app.inference.temperature,
# `fetalcns calibrate-temperature`). Absent means T = 1, plain softmax, as before the block.
CALIBRATION_METHODS = ("temperature",)
DEFAULT_TEMPERATURE = 1.0

_SHA256 = re.compile(r"[0-9a-f]{64}")


# The card's optional "input_policy": JPEG 2000 at 10:1 moves a probability by about 0.1, so a
# card may leave lossily compressed images out of the verdict.
LOSSY_POLICIES = ("accept", "warn", "exclude")
DEFAULT_LOSSY_POLICY = "warn"


# The card's optional "cine" block: which stored frames of a cine loop the model analyses and how
# a loop counts in the patient verdict (app.inference.analysis.select_frames, aggregate's groups).
# ``max_analysed_frames``: at most this many frames per loop, spread evenly, first and last
# included; absent means DEFAULT_MAX_ANALYSED_FRAMES (a bound on the work and on the heatmaps
# sent to the PACS per loop). ``loop_weight``: "one_image" (a loop is one image of
# the study: the mean of its usable frames' probabilities, so a 100-frame loop cannot outvote the
# stills) or "per_frame" (each frame is an image, as before the block).
LOOP_WEIGHTS = ("one_image", "per_frame")
DEFAULT_LOOP_WEIGHT = "one_image"
DEFAULT_MAX_ANALYSED_FRAMES = 32


@dataclass(frozen=True)
class CineRule:
    max_analysed_frames: int = DEFAULT_MAX_ANALYSED_FRAMES
    loop_weight: str = DEFAULT_LOOP_WEIGHT


class ModelCardError(ValueError):
    """The model directory is missing or incomplete, its card is malformed, or its model file
    does not match the card. The message names the file and, for a bad card, the field."""


@dataclass(frozen=True)
class OodSignal:
    """One OOD signal of the card: an image whose score exceeds ``threshold`` is flagged by it."""

    method: str
    threshold: float
    parameters_file: str | None = None

    def flags(self, score: float) -> bool:
        # Written as "not within" so that a NaN score (a broken forward pass) is flagged too.
        return not score <= self.threshold


@dataclass(frozen=True)
class VerdictRule:
    """When the images of a study may give a patient verdict, else "indeterminate".

    ``min_usable_images``: at least this many images must be usable (not flagged, not failed).
    ``max_excluded_fraction``: when more than this fraction of the study's images is left out
    (out of distribution, poor quality, or not analysable), the study is not one the model can
    judge, however confident the remaining images are. Exactly this fraction still passes.
    """

    min_usable_images: int = DEFAULT_MIN_USABLE_IMAGES
    max_excluded_fraction: float = DEFAULT_MAX_EXCLUDED_FRACTION


@dataclass(frozen=True)
class OodRule:
    """The card's out-of-distribution rule: its signals, the first being the primary one (the
    card's ``thresholds.ood.method``), combined by ``combine`` ("any": flagged when any signal
    flags). ``method`` and ``threshold`` are the primary signal's, which is all that a card with
    one signal has."""

    signals: tuple[OodSignal, ...]
    combine: str = "any"

    @classmethod
    def single(cls, method: str, threshold: float) -> OodRule:
        return cls((OodSignal(method, float(threshold)),))

    @property
    def method(self) -> str:
        return self.signals[0].method

    @property
    def threshold(self) -> float:
        return self.signals[0].threshold

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(signal.method for signal in self.signals)

    def fired(self, scores: Mapping[str, float]) -> tuple[str, ...]:
        """The signals whose score is above their threshold; a missing score counts as NaN."""
        return tuple(s.method for s in self.signals if s.flags(scores.get(s.method, math.nan)))

    def flags(self, scores: Mapping[str, float] | float) -> bool:
        """Whether the image is out of distribution. A bare number is the primary signal's score."""
        if not isinstance(scores, Mapping):
            return self.signals[0].flags(float(scores))
        return bool(self.fired(scores))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelCard:
    directory: Path
    raw: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def version(self) -> str:
        return str(self.raw["version"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.raw["classes"])

    @property
    def normal_class(self) -> str:
        return str(self.raw["normal_class"])

    @property
    def normal_index(self) -> int:
        return self.classes.index(self.normal_class)

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec.from_card(self.raw["input"])

    @property
    def input_name(self) -> str:
        return str(self.raw["input"].get("name", "image"))

    @property
    def aggregation(self) -> str:
        return str(self.raw["aggregation"])

    @property
    def thresholds(self) -> dict[str, Any]:
        return dict(self.raw["thresholds"])

    @property
    def ood_rule(self) -> OodRule:
        ood = self.raw["thresholds"]["ood"]
        signals = tuple(
            OodSignal(
                method=str(entry["method"]),
                threshold=float(entry["threshold"]),
                parameters_file=str(entry["parameters"]["file"]) if "parameters" in entry else None,
            )
            for entry in (ood, *ood.get("combined_with", ()))
        )
        return OodRule(signals=signals, combine=str(ood.get("rule", "any")))

    def ood_parameters_path(self, method: str) -> Path:
        """The parameters file of an OOD signal that needs one (e.g. ood.npz)."""
        for signal in self.ood_rule.signals:
            if signal.method == method and signal.parameters_file:
                return self.directory / signal.parameters_file
        raise ModelCardError(f"{CARD_FILE}: the OOD signal {method!r} has no parameters file")

    @property
    def verdict_rule(self) -> VerdictRule:
        block = self.raw.get("verdict") or {}
        return VerdictRule(
            min_usable_images=int(block.get("min_usable_images", DEFAULT_MIN_USABLE_IMAGES)),
            max_excluded_fraction=float(block.get("max_excluded_fraction", DEFAULT_MAX_EXCLUDED_FRACTION)),
        )

    @property
    def cine_rule(self) -> CineRule:
        block = self.raw.get("cine") or {}
        return CineRule(
            max_analysed_frames=int(block.get("max_analysed_frames", DEFAULT_MAX_ANALYSED_FRAMES)),
            loop_weight=str(block.get("loop_weight", DEFAULT_LOOP_WEIGHT)),
        )

    @property
    def lossy_policy(self) -> str:
        """What lossily compressed inputs get (``input_policy.lossy``): "accept" (used, recorded),
        "warn" (used, flagged to the reader; the default) or "exclude" (left out of the verdict)."""
        block = self.raw.get("input_policy") or {}
        return str(block.get("lossy", DEFAULT_LOSSY_POLICY))

    @property
    def temperature(self) -> float:
        """T of softmax(logits / T): the card's fitted temperature, 1.0 when it has none.

        The one place serving and evaluation read it, so both divide by the same number.
        """
        block = self.raw.get("calibration") or {}
        return float(block.get("temperature", DEFAULT_TEMPERATURE))

    @property
    def cam_target(self) -> str:
        outputs = self.raw.get("outputs")
        cam = outputs.get("cam") if isinstance(outputs, dict) else None
        target = cam.get("target") if isinstance(cam, dict) else None
        return str(target) if target else "logit"

    @property
    def sha256(self) -> str:
        return str(self.raw["onnx"]["sha256"])

    @property
    def onnx_path(self) -> Path:
        return self.directory / str(self.raw["onnx"].get("file", ONNX_FILE))

    def variant(self, precision: str) -> tuple[Path, str, Mapping[str, Any]]:
        """(file, sha256, card entry) of the model in ``precision``; fp32 is model.onnx itself.

        A variant whose parity check did not pass is refused: it may give other verdicts.
        """
        if precision not in PRECISIONS:
            raise ModelCardError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if precision == "fp32":
            return self.onnx_path, self.sha256, self.raw["onnx"]
        entry = (self.raw["onnx"].get("variants") or {}).get(precision)
        if entry is None:
            raise ModelCardError(
                f"the model has no {precision} variant; "
                f"make one with `fetalcns export --quantize {precision}`"
            )
        if not entry["parity"]["passed"]:
            summary = entry["parity"].get("summary", "")
            raise ModelCardError(f"the {precision} variant failed its parity check against fp32 ({summary})")
        return self.directory / str(entry["file"]), str(entry["sha256"]), entry

    @property
    def clinical_use(self) -> bool:
        return bool(self.raw["clinical_use"])

    @property
    def synthetic_training_data(self) -> bool:
        return bool(self.raw["provenance"].get("synthetic", False))

    @property
    def banner(self) -> str | None:
        """The warning every screen must show for this model, if any."""
        if self.synthetic_training_data and not self.clinical_use:
            return "demo model — synthetic training data — not for clinical use"
        if not self.clinical_use:
            return "not for clinical use — " + str(self.raw["clinical_use_reason"])
        return None


def _fail(path: str, problem: str) -> NoReturn:
    raise ModelCardError(f"{CARD_FILE}: {path} {problem}")


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(path, "must be an object")
    return value


def _text(value: object, path: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        _fail(path, "must be a string")
    if not value.strip() and not allow_empty:
        _fail(path, "must be a non-empty string")
    return value


def _number(value: object, path: str, low: float | None = None, high: float | None = None) -> float:
    # bool is an int in Python, and json.loads accepts NaN and Infinity: neither is a usable number.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(path, "must be a number")
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(path, f"must be a number from {low} to {high} (got {value!r})")
    return float(value)


def _choice(value: object, path: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        _fail(path, f"must be one of {', '.join(repr(a) for a in allowed)} (got {value!r})")
    return str(value)


def _numbers(value: object, path: str, length: int, positive: bool = False) -> list[float]:
    if not isinstance(value, list) or len(value) != length:
        _fail(path, f"must be a list of {length} numbers")
    numbers = [_number(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if positive and min(numbers) <= 0:
        _fail(path, "must hold numbers above 0")
    return numbers


def _check_classes(raw: Mapping[str, Any]) -> None:
    classes = raw["classes"]
    if not isinstance(classes, list) or len(classes) < 2:
        _fail("classes", "must be a list of at least 2 class names")
    for i, name in enumerate(classes):
        _text(name, f"classes[{i}]")
    duplicates = sorted({name for name in classes if classes.count(name) > 1})
    if duplicates:
        _fail("classes", f"must not repeat a name ({', '.join(duplicates)})")
    if _text(raw["normal_class"], "normal_class") not in classes:
        _fail("normal_class", f"must be one of classes (got {raw['normal_class']!r})")


def _check_input(value: object) -> None:
    card_input = _object(value, "input")
    for key in ("size", "mean", "std"):
        if key not in card_input:
            _fail(f"input.{key}", "is missing")
    size = card_input["size"]
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        _fail("input.size", "must be [height, width], two positive integers")
    _numbers(card_input["mean"], "input.mean", 3)
    _numbers(card_input["std"], "input.std", 3, positive=True)
    # Optional: absent means the PreprocessSpec default, which the vocabularies start with.
    for key, allowed in (
        ("color_mode", COLOR_MODES),
        ("interpolation", INTERPOLATIONS),
        ("crop", CROPS),
        ("resize", RESIZE_MODES),
        ("layout", LAYOUTS),
        ("dtype", DTYPES),
    ):
        if key in card_input:
            _choice(card_input[key], f"input.{key}", allowed)
    if "name" in card_input:
        _text(card_input["name"], "input.name")


def _check_outputs(value: object) -> None:
    outputs = _object(value, "outputs")
    if "cam" in outputs:
        cam = _object(outputs["cam"], "outputs.cam")
        if "target" in cam:  # absent on cards older than the choice: they mean "logit"
            _choice(cam["target"], "outputs.cam.target", CAM_TARGETS)


def _file_name(value: object, path: str) -> str:
    name = _text(value, path)
    # A file beside the card, never a path: a card must not point outside its directory.
    if name in (".", "..") or "/" in name or "\\" in name:
        _fail(path, "must be a file name in the model directory, not a path")
    return name


def _check_sha256(value: object, path: str) -> None:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        _fail(path, "must be 64 lower-case hexadecimal digits")


def _check_ood_signal(signal: Mapping[str, Any], path: str) -> str:
    method = _choice(signal.get("method"), f"{path}.method", OOD_METHODS)
    _number(signal.get("threshold"), f"{path}.threshold")
    if "percentile" in signal:
        _number(signal["percentile"], f"{path}.percentile", 0.0, 100.0)
    if "false_flag_rate" in signal:
        _number(signal["false_flag_rate"], f"{path}.false_flag_rate", 0.0, 1.0)
    if "shrinkage" in signal:
        _number(signal["shrinkage"], f"{path}.shrinkage", 0.0, 1.0)
    if method in OOD_FEATURE_METHODS or "parameters" in signal:
        if "parameters" not in signal:
            _fail(f"{path}.parameters", f"is missing (the {method} signal needs its fitted parameters)")
        parameters = _object(signal["parameters"], f"{path}.parameters")
        _file_name(parameters.get("file"), f"{path}.parameters.file")
        _check_sha256(parameters.get("sha256"), f"{path}.parameters.sha256")
    return method


def _check_ood(value: object) -> None:
    ood = _object(value, "thresholds.ood")
    methods = [_check_ood_signal(ood, "thresholds.ood")]
    if "calibrated_on" in ood:
        _text(ood["calibrated_on"], "thresholds.ood.calibrated_on", allow_empty=True)
    if "combined_with" in ood:
        more = ood["combined_with"]
        if not isinstance(more, list):
            _fail("thresholds.ood.combined_with", "must be a list of OOD signals")
        for i, entry in enumerate(more):
            path = f"thresholds.ood.combined_with[{i}]"
            methods.append(_check_ood_signal(_object(entry, path), path))
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        _fail("thresholds.ood.combined_with", f"must not repeat a signal ({', '.join(repeated)})")
    if "rule" in ood:
        _choice(ood["rule"], "thresholds.ood.rule", OOD_RULES)
    if "expected_false_flag_rate" in ood:
        _number(ood["expected_false_flag_rate"], "thresholds.ood.expected_false_flag_rate", 0.0, 1.0)
    if "calibration" in ood:
        calibration = _object(ood["calibration"], "thresholds.ood.calibration")
        for key in ("patients", "images"):
            count = calibration.get(key)
            if key in calibration and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                _fail(f"thresholds.ood.calibration.{key}", "must be a non-negative integer")


def _check_thresholds(value: object) -> None:
    thresholds = _object(value, "thresholds")
    if "abnormal" in thresholds:
        _number(thresholds["abnormal"], "thresholds.abnormal", 0.0, 1.0)
    if "ood" not in thresholds:
        _fail("thresholds.ood", "is missing (the out-of-distribution rule)")
    _check_ood(thresholds["ood"])


def _check_verdict(value: object) -> None:
    verdict = _object(value, "verdict")
    if "min_usable_images" in verdict:
        count = verdict["min_usable_images"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            _fail("verdict.min_usable_images", f"must be an integer of at least 1 (got {count!r})")
    if "max_excluded_fraction" in verdict:
        _number(verdict["max_excluded_fraction"], "verdict.max_excluded_fraction", 0.0, 1.0)
    unknown = sorted(set(verdict) - {"min_usable_images", "max_excluded_fraction"})
    if unknown:
        # A misspelt key would otherwise silently fall back to the default.
        _fail("verdict", f"has unknown field(s) {', '.join(unknown)}")


def _check_cine(value: object) -> None:
    cine = _object(value, "cine")
    if "max_analysed_frames" in cine:
        count = cine["max_analysed_frames"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            _fail("cine.max_analysed_frames", f"must be an integer of at least 1 (got {count!r})")
    if "loop_weight" in cine:
        _choice(cine["loop_weight"], "cine.loop_weight", LOOP_WEIGHTS)
    unknown = sorted(set(cine) - {"max_analysed_frames", "loop_weight"})
    if unknown:
        _fail("cine", f"has unknown field(s) {', '.join(unknown)}")


def _check_input_policy(value: object) -> None:
    policy = _object(value, "input_policy")
    if "lossy" in policy:
        _choice(policy["lossy"], "input_policy.lossy", LOSSY_POLICIES)
    unknown = sorted(set(policy) - {"lossy"})
    if unknown:
        _fail("input_policy", f"has unknown field(s) {', '.join(unknown)}")


def _check_calibration(value: object) -> None:
    calibration = _object(value, "calibration")
    _choice(calibration.get("method"), "calibration.method", CALIBRATION_METHODS)
    temperature = _number(calibration.get("temperature"), "calibration.temperature")
    if temperature <= 0:
        _fail("calibration.temperature", f"must be a number above 0 (got {temperature!r})")
    for key in ("nll_before", "nll_after", "ece_before", "ece_after"):
        if key in calibration:
            _number(calibration[key], f"calibration.{key}", 0.0)
    if "fitted_on" in calibration:
        fitted_on = _object(calibration["fitted_on"], "calibration.fitted_on")
        for key in ("patients", "images"):
            count = fitted_on.get(key)
            if key in fitted_on and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
                _fail(f"calibration.fitted_on.{key}", "must be a positive integer")


def _check_onnx(value: object) -> None:
    onnx = _object(value, "onnx")
    _check_sha256(onnx.get("sha256"), "onnx.sha256")
    if "file" in onnx:
        _file_name(onnx["file"], "onnx.file")
    if "variants" in onnx:
        variants = _object(onnx["variants"], "onnx.variants")
        for name, entry in variants.items():
            path = f"onnx.variants.{name}"
            if name not in PRECISIONS or name == "fp32":
                _fail(path, f"must be one of {', '.join(p for p in PRECISIONS if p != 'fp32')}")
            entry = _object(entry, path)
            _file_name(entry.get("file"), f"{path}.file")
            _check_sha256(entry.get("sha256"), f"{path}.sha256")
            parity = _object(entry.get("parity"), f"{path}.parity")
            if not isinstance(parity.get("passed"), bool):
                _fail(f"{path}.parity.passed", "must be true or false")


def validate_card(raw: object) -> None:
    """Check every field that code reads; raise ModelCardError naming the first bad field."""
    card = _object(raw, "the card")
    missing = [key for key in REQUIRED_KEYS if key not in card]
    if missing:
        raise ModelCardError(f"{CARD_FILE}: lacks the required field(s) {', '.join(missing)}")
    version = card["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        _fail("schema_version", f"must be an integer from 1 to {SCHEMA_VERSION} (got {version!r})")
    for key in ("name", "version", "architecture", "intended_use"):
        _text(card[key], key)
    _check_classes(card)
    _check_input(card["input"])
    _check_outputs(card["outputs"])
    _choice(card["aggregation"], "aggregation", AGGREGATIONS)
    _check_thresholds(card["thresholds"])
    if "verdict" in card:  # optional: absent means the defaults (VerdictRule)
        _check_verdict(card["verdict"])
    if "cine" in card:  # optional: absent means every stored frame, a loop counting as one image
        _check_cine(card["cine"])
    if "input_policy" in card:  # optional: absent means lossy inputs are used with a warning
        _check_input_policy(card["input_policy"])
    if "calibration" in card:  # optional: absent means T = 1 (plain softmax)
        _check_calibration(card["calibration"])
    provenance = _object(card["provenance"], "provenance")
    if "synthetic" in provenance and not isinstance(provenance["synthetic"], bool):
        _fail("provenance.synthetic", "must be true or false")
    _object(card["metrics"], "metrics")
    _check_onnx(card["onnx"])
    if not isinstance(card["clinical_use"], bool):
        _fail("clinical_use", "must be true or false")
    _text(card["clinical_use_reason"], "clinical_use_reason", allow_empty=bool(card["clinical_use"]))


def metric_interval(value: object) -> tuple[float, float, str | None] | None:
    """(low, high, method) of a confidence interval as the card's "metrics" (or metrics.json) holds it.

    Reads both layouts: ``{"low", "high", "method"}`` and the older bare ``[low, high]`` of cards
    evaluated before intervals carried their method (method None), so those stay readable. None
    for anything else, a missing interval included.
    """
    if isinstance(value, Mapping):
        low, high, method = value.get("low"), value.get("high"), value.get("method")
    elif isinstance(value, list | tuple) and len(value) == 2:
        (low, high), method = value, None
    else:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        return None
    return float(low), float(high), str(method) if method is not None else None


def load_model_card(directory: Path | str, verify_sha: bool = True) -> ModelCard:
    directory = Path(directory)
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        raise ModelCardError(f"no model card at {card_path}")
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelCardError(f"model card {card_path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise ModelCardError(f"model card {card_path} cannot be read: {exc.strerror}") from exc
    validate_card(raw)
    card = ModelCard(directory=directory, raw=raw)
    if not card.onnx_path.is_file():
        raise ModelCardError(f"model file {card.onnx_path} is missing")
    if verify_sha and sha256_of(card.onnx_path) != card.sha256:
        raise ModelCardError(f"{card.onnx_path} does not match the sha256 in its model card")
    for name, sha in _ood_parameter_files(raw):
        path = directory / name
        if not path.is_file():
            raise ModelCardError(f"OOD parameters file {path} is missing")
        if verify_sha and sha256_of(path) != sha:
            raise ModelCardError(f"{path} does not match the sha256 in its model card")
    return card


def _ood_parameter_files(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(file, sha256) of every OOD signal's parameters file in a validated card."""
    ood = raw["thresholds"]["ood"]
    return [
        (str(entry["parameters"]["file"]), str(entry["parameters"].get("sha256", "")))
        for entry in (ood, *ood.get("combined_with", ()))
        if isinstance(entry, Mapping) and "parameters" in entry
    ]


def _fill_parameter_digests(directory: Path, raw: dict[str, Any]) -> None:
    """Set the sha256 of each OOD parameters file from the file itself (never passed in)."""
    thresholds = raw.get("thresholds")
    ood = thresholds.get("ood") if isinstance(thresholds, Mapping) else None
    if not isinstance(ood, Mapping):
        return
    ood = dict(ood)
    entries = [ood, *[dict(e) if isinstance(e, Mapping) else e for e in ood.get("combined_with", [])]]
    for entry in entries:
        parameters = entry.get("parameters") if isinstance(entry, dict) else None
        if isinstance(parameters, Mapping) and isinstance(parameters.get("file"), str):
            path = directory / parameters["file"]
            if path.is_file() and "/" not in parameters["file"]:
                entry["parameters"] = {**parameters, "sha256": sha256_of(path)}
    if "combined_with" in ood:
        ood["combined_with"] = entries[1:]
    raw["thresholds"] = {**thresholds, "ood": ood}


def write_model_card(directory: Path | str, raw: dict[str, Any]) -> Path:
    """Validate and write a card; the onnx sha256 is computed here, never passed in."""
    directory = Path(directory)
    raw = dict(_object(raw, "the card"))
    raw.setdefault("schema_version", SCHEMA_VERSION)
    onnx_info = dict(_object(raw.get("onnx", {}), "onnx"))
    onnx_file = directory / str(onnx_info.get("file", ONNX_FILE))
    onnx_info["file"] = onnx_file.name
    onnx_info["sha256"] = sha256_of(onnx_file)
    onnx_info["size_bytes"] = onnx_file.stat().st_size
    raw["onnx"] = onnx_info
    _fill_parameter_digests(directory, raw)
    validate_card(raw)
    path = directory / CARD_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
