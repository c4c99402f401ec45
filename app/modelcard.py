"""The model card, models/NAME/model.json: the one source of truth about a model.

Export writes it; serving, evaluation and the web app read it. Class names,
preprocessing, thresholds and provenance come from here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.preprocess import PreprocessSpec

CARD_FILE = "model.json"
ONNX_FILE = "model.onnx"
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
# anomaly logit). Cards written before the choice existed mean "logit".
CAM_TARGETS = ("logit", "normal-contrast")
DEFAULT_CAM_TARGET = "normal-contrast"


class ModelCardError(ValueError):
    """The model directory is missing, incomplete or does not match its card."""


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


def validate_card(raw: dict[str, Any]) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise ModelCardError(f"model card lacks {', '.join(missing)}")
    classes = raw["classes"]
    if not isinstance(classes, list) or len(set(classes)) != len(classes) or len(classes) < 2:
        raise ModelCardError("model card 'classes' must be a list of distinct names")
    if raw["normal_class"] not in classes:
        raise ModelCardError("model card 'normal_class' is not one of its classes")
    if raw["aggregation"] not in ("mean", "vote"):
        raise ModelCardError("model card 'aggregation' must be 'mean' or 'vote'")
    PreprocessSpec.from_card(raw["input"])


def load_model_card(directory: Path | str, verify_sha: bool = True) -> ModelCard:
    directory = Path(directory)
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        raise ModelCardError(f"no model card at {card_path}")
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"model card {card_path} is not valid JSON: {exc}") from exc
    validate_card(raw)
    card = ModelCard(directory=directory, raw=raw)
    if not card.onnx_path.is_file():
        raise ModelCardError(f"model file {card.onnx_path} is missing")
    if verify_sha and sha256_of(card.onnx_path) != card.sha256:
        raise ModelCardError(f"{card.onnx_path} does not match the sha256 in its model card")
    return card


def write_model_card(directory: Path | str, raw: dict[str, Any]) -> Path:
    """Validate and write a card; the onnx sha256 is computed here, never passed in."""
    directory = Path(directory)
    raw = dict(raw)
    raw.setdefault("schema_version", SCHEMA_VERSION)
    onnx_info = dict(raw.get("onnx", {}))
    onnx_file = directory / str(onnx_info.get("file", ONNX_FILE))
    onnx_info["file"] = onnx_file.name
    onnx_info["sha256"] = sha256_of(onnx_file)
    onnx_info["size_bytes"] = onnx_file.stat().st_size
    raw["onnx"] = onnx_info
    validate_card(raw)
    path = directory / CARD_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
