"""`fetalcns export`: a training checkpoint → models/NAME/ (model.onnx + model.json)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.modelcard import CAM_TARGETS, DEFAULT_CAM_TARGET


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX with its model card",
        description="Write OUT/model.onnx (outputs logits and Grad-CAM) and OUT/model.json.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="e.g. runs/NAME/final/best.pt")
    parser.add_argument("--out", type=Path, required=True, help="model directory, e.g. models/NAME/")
    parser.add_argument("--name", default=None, help="model name (default: the output folder name)")
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument("--metrics", type=Path, default=None, help="metrics.json from `fetalcns evaluate`")
    parser.add_argument(
        "--cam-target",
        default=DEFAULT_CAM_TARGET,
        choices=CAM_TARGETS,
        help="what each class heatmap explains: its log-odds against normal (default) or its logit",
    )
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from app.training.export import card_from_checkpoint, export_onnx
    from app.training.trainer import load_checkpoint

    try:
        model, payload = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, KeyError, RuntimeError) as exc:
        print(f"error: cannot read checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    card = card_from_checkpoint(payload, args.name or args.out.resolve().name, args.version)
    if args.metrics is not None:
        card["metrics"] = json.loads(args.metrics.read_text(encoding="utf-8"))
    out = export_onnx(model, args.out, card, cam_target=args.cam_target)
    print(f"exported {out / 'model.onnx'} and {out / 'model.json'}")
    return 0
