"""Helpers for the export tests: an independent autograd Grad-CAM and smooth random test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from app.training.model import ResNet


def class_scores(logits: torch.Tensor, target: str, normal_index: int = 3) -> torch.Tensor:
    """The score each class's Grad-CAM explains, written out from its definition."""
    if target == "logit":
        return logits
    assert target == "normal-contrast"
    anomalies = [c for c in range(logits.shape[1]) if c != normal_index]
    columns = [
        logits[:, normal_index] - logits[:, anomalies].mean(dim=1)
        if c == normal_index
        else logits[:, c] - logits[:, normal_index]
        for c in range(logits.shape[1])
    ]
    return torch.stack(columns, dim=1)


def autograd_gradcam(model: ResNet, images: torch.Tensor, target: str = "logit") -> np.ndarray:
    """Textbook Grad-CAM (Selvaraju et al.) with hooks on layer4: [N, C, h, w], unnormalised.

    Independent of CamHead: channel weights are spatial means of d score_c / d A, from autograd,
    where score_c is the class logit or (``normal-contrast``) its log-odds against normal.
    """
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["A"] = output

    handle = model.layer4.register_forward_hook(keep)
    try:
        model.eval()
        scores = class_scores(model(images.clone().requires_grad_(True)), target)
        maps = []
        for c in range(scores.shape[1]):
            model.zero_grad()
            if captured["A"].grad is not None:
                captured["A"].grad = None
            scores[:, c].sum().backward(retain_graph=True)
            activations, grads = captured["A"], captured["A"].grad
            alpha = grads.mean(dim=(2, 3), keepdim=True)
            maps.append(torch.relu((alpha * activations).sum(dim=1)).detach())
    finally:
        handle.remove()
    return torch.stack(maps, dim=1).numpy()


def smooth_images(count: int, seed: int, size: int = 224) -> np.ndarray:
    """Random low-frequency float32 inputs [N, 3, size, size], roughly standardised like real ones."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(count, 3, 12, 12, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").numpy()


def normalise_by_max(maps: np.ndarray) -> np.ndarray:
    peak = maps.max(axis=(-2, -1), keepdims=True)
    return maps / np.where(peak > 0, peak, 1.0)


def strip_features(path: Path) -> None:
    """Turn a new export into one shaped like an older export: no `features` output, and the
    pooled tensor under an anonymous name as the torch exporter writes it."""
    model = onnx.load(str(path))
    graph = model.graph
    kept = [o for o in graph.output if o.name != "features"]
    del graph.output[:]
    graph.output.extend(kept)
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == "features":
                    field[i] = "/pool/Div_output_0"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
