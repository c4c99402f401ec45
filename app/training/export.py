"""Export a trained ResNet to models/NAME/: model.onnx (logits + in-graph Grad-CAM) and model.json.

`export_onnx` is the single export path, used by `fetalcns export`, by the demo build and by the
tests' tiny untrained model (`export_untrained_demo`), so every model is shaped the same way.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from app.labels import NORMAL_CLASS, PAPER_CLASSES
from app.modelcard import CAM_TARGETS, DEFAULT_CAM_TARGET, ONNX_FILE, write_model_card
from app.preprocess import PreprocessSpec
from app.provenance import portable_record
from app.training.model import (
    DEFAULT_LSE_SHARPNESS,
    CamHead,
    ResNet,
    build_resnet,
    cell_centre,
    model_config,
)
from app.training.surgery import features_output_card

OPSET = 17
# onnxruntime 1.31 refuses IR versions above 10.
MAX_IR_VERSION = 10
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "cam", "features")

INTENDED_USE = (
    "Research and software demonstration of decision support for fetal CNS anomaly screening on "
    "prenatal ultrasound (Qi et al., arXiv 2501.02000). Outputs are suggestions for a radiologist, "
    "who records the diagnosis."
)
DEMO_CLINICAL_USE_REASON = (
    "trained on synthetic phantom images only (fetalcns synth); never validated on patient data"
)


def energy_scores(logits: np.ndarray) -> np.ndarray:
    """Energy score −logsumexp(logits) per row: higher means less like the training data."""
    logits = np.asarray(logits, dtype=np.float64)
    peak = logits.max(axis=1, keepdims=True)
    return -(peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1)))


def ood_threshold(training_logits: np.ndarray, percentile: float, calibrated_on: str) -> dict[str, Any]:
    """The card's OOD rule: flag an image whose energy exceeds this percentile of training energies."""
    energies = energy_scores(training_logits)
    return {
        "method": "energy",
        "threshold": float(np.percentile(energies, percentile)),
        "percentile": float(percentile),
        "calibrated_on": calibrated_on,
    }


def _alignment(model: ResNet) -> str:
    stride, offset = cell_centre(model)
    if model.centered_grid:
        return f"pixel-centre: cell i is centred on model-input pixel {stride}i + {offset} (centred grid)"
    return f"corner: cell i is centred on model-input pixel {stride}i (usual ResNet padding)"


def _architecture_summary(config: dict[str, Any]) -> str:
    summary = f"{config['arch']} (width x{config['width']:g}"
    if config.get("output_stride", 32) != 32:
        summary += f", output stride {config['output_stride']}"
    if config.get("pooling") == "lse":
        summary += f", log-sum-exp pooling r={config['lse_sharpness']:g}"
    return summary + ")"


CAM_MEANINGS = {
    "logit": "unnormalised Grad-CAM of each class logit y_c on layer4: ReLU(sum_k w_ck A_k) / (h*w)",
    "normal-contrast": (
        "unnormalised Grad-CAM on layer4 of each anomaly's log-odds against normal, "
        "log(p_c / p_normal) = y_c - y_normal: ReLU(sum_k (w_ck - w_normal,k) A_k) / (h*w); "
        "for the normal class, of y_normal minus the mean anomaly logit"
    ),
}


def default_card(
    model: ResNet, spec: PreprocessSpec | None = None, cam_target: str = DEFAULT_CAM_TARGET
) -> dict[str, Any]:
    """Every required card key with conservative defaults; callers override what they know."""
    spec = spec or PreprocessSpec()
    config = model_config(model)
    classes = list(PAPER_CLASSES) if config["num_classes"] == len(PAPER_CLASSES) else None
    if classes is None:
        raise ValueError("the default card only knows the paper's 5 classes; pass 'classes' explicitly")
    return {
        "name": "fetalcns-model",
        "version": "0.0.0",
        "architecture": _architecture_summary(config),
        "architecture_details": {
            **config,
            "cam_layer": "layer4",
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "classes": classes,
        "normal_class": NORMAL_CLASS,
        "input": {**spec.to_card(), "name": INPUT_NAME},
        "color_mode": spec.color_mode,
        "outputs": {
            "logits": {"shape": ["N", len(classes)], "meaning": "class scores before softmax"},
            "cam": {
                "shape": ["N", len(classes), "h", "w"],
                "target": cam_target,
                "meaning": CAM_MEANINGS[cam_target],
                "alignment": _alignment(model),
            },
            "features": features_output_card(model.fc.in_features, config.get("pooling", "avg")),
        },
        "aggregation": "mean",
        "thresholds": default_card_thresholds(),
        "provenance": {"data": None, "synthetic": False},
        "metrics": {},
        "onnx": {"file": ONNX_FILE, "opset": OPSET},
        "intended_use": INTENDED_USE,
        "clinical_use": False,
        "clinical_use_reason": "not validated on patient data",
    }


def write_onnx(
    model: ResNet,
    path: Path,
    image_size: tuple[int, int] = (224, 224),
    cam_target: str = DEFAULT_CAM_TARGET,
    normal_index: int | None = None,
) -> Path:
    """Trace (logits, cam, features) to ONNX with a dynamic batch axis."""
    wrapper = CamHead(model, cam_target, normal_index).eval()
    example = torch.zeros(2, 3, *image_size, dtype=torch.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        # The TorchScript exporter is deprecated but still exact for this static graph, and it
        # writes IR 8 directly; the dynamo exporter would need onnxscript rewrites for no gain.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Harmless: the exporter declines to constant-fold a Slice node and says so.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        raw = Path(scratch) / "raw.onnx"
        torch.onnx.export(
            wrapper,
            (example,),
            str(raw),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "N"}, **{name: {0: "N"} for name in OUTPUT_NAMES}},
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
        graph = onnx.load(str(raw))
    if graph.ir_version > MAX_IR_VERSION:
        graph.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return path


def export_onnx(
    model: ResNet, out_dir: Path, card_fields: dict[str, Any], cam_target: str = DEFAULT_CAM_TARGET
) -> Path:
    """Write out_dir/model.onnx and out_dir/model.json; returns out_dir (the model directory).

    card_fields override the defaults of `default_card` key by key (top level only).
    ``cam_target`` chooses what the `cam` output explains (see ``app.modelcard.CAM_TARGETS``).
    """
    out_dir = Path(out_dir)
    was_training = model.training
    model.eval()
    try:
        if cam_target not in CAM_TARGETS:
            raise ValueError(f"cam target must be one of {', '.join(CAM_TARGETS)}, got {cam_target!r}")
        card = default_card(model, cam_target=cam_target)
        card.update(card_fields)
        spec = PreprocessSpec.from_card(card["input"])
        classes = list(card["classes"])
        normal_index = classes.index(card["normal_class"]) if card.get("normal_class") in classes else None
        write_onnx(model, out_dir / ONNX_FILE, spec.size, cam_target, normal_index)
        write_model_card(out_dir, card)
    finally:
        model.train(was_training)
    return out_dir


def build_untrained_model(
    width: float = 0.125,
    seed: int = 0,
    output_stride: int = 32,
    pooling: str = "avg",
    lse_sharpness: float = DEFAULT_LSE_SHARPNESS,
) -> ResNet:
    """A randomly initialised ResNet-34 in eval mode whose outputs still depend on the input."""
    torch.manual_seed(seed)
    model = build_resnet(
        "resnet34",
        width=width,
        num_classes=len(PAPER_CLASSES),
        output_stride=output_stride,
        pooling=pooling,
        lse_sharpness=lse_sharpness,
    )
    # Fresh BN statistics (mean 0, var 1) let activations grow block after block into huge logits;
    # estimating them on a few random images keeps logits moderate and input-dependent.
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            coarse = torch.randn(4, 3, 14, 14, generator=generator)
            model(torch.nn.functional.interpolate(coarse, size=(224, 224), mode="bilinear"))
    return model.eval()


def export_untrained_demo(out_dir: Path, width: float = 0.125, seed: int = 0) -> Path:
    """A tiny randomly initialised ResNet-34 exported like a real model, for tests. Returns out_dir."""
    model = build_untrained_model(width, seed)
    card = {
        "name": "untrained-test-model",
        "version": "0.0.0",
        "provenance": {"data": None, "synthetic": False, "note": "random weights; for software tests only"},
        "clinical_use_reason": "random, untrained weights: for software tests only",
    }
    return export_onnx(model, Path(out_dir), card)


def card_from_checkpoint(payload: dict[str, Any], name: str, version: str) -> dict[str, Any]:
    """Card fields that a training checkpoint knows: provenance, OOD rule, selection, input spec."""
    # Checkpoints written before provenance was portable hold absolute data paths; a card never does.
    provenance = portable_record(payload.get("provenance") or {})
    synthetic = bool(provenance.get("synthetic", False))
    thresholds = default_card_thresholds()
    if payload.get("ood"):
        thresholds["ood"] = payload["ood"]
    train_config = payload.get("train_config", {})
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "input": {**payload["input"], "name": INPUT_NAME},
        "thresholds": thresholds,
        "provenance": {
            **provenance,
            "train_patients": len(payload.get("train_patients", [])),
            "selection_patients": len(payload.get("val_patients", [])),
        },
        "training": {
            "recipe": "weighted cross-entropy (N/(C*n_c)), AdamW, cosine schedule, ultrasound augmentation",
            "config": train_config,
            "selected_epoch": payload.get("epoch"),
            "selection": payload.get("selection"),
            "selection_criterion": "patient-level validation NLL of the mean softmax",
        },
    }
    if synthetic:
        card["clinical_use_reason"] = DEMO_CLINICAL_USE_REASON
        card["intended_use"] = (
            INTENDED_USE + " This demo model was trained on synthetic phantoms: its outputs on real "
            "ultrasound images are meaningless."
        )
    return card


def default_card_thresholds() -> dict[str, Any]:
    return {
        "abnormal": 0.5,
        # Not calibrated: a huge threshold never flags, which is the honest default.
        "ood": {"method": "energy", "threshold": 1.0e6, "percentile": 100.0, "calibrated_on": "nothing"},
    }
