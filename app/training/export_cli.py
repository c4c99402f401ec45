"""`fetalcns export`: a training checkpoint → models/NAME/ (model.onnx + model.json)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.modelcard import AGGREGATIONS, CAM_TARGETS, DEFAULT_CAM_TARGET


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX with its model card",
        description=(
            "Write OUT/model.onnx (outputs logits, Grad-CAM and pooled features) and OUT/model.json; "
            "or, with --add-features-output, add the features output to an older exported model."
        ),
    )
    parser.add_argument("--checkpoint", type=Path, help="e.g. runs/NAME/final/best.pt")
    parser.add_argument("--out", type=Path, help="model directory, e.g. models/NAME/")
    parser.add_argument(
        "--add-features-output",
        type=Path,
        metavar="MODEL_DIR",
        default=None,
        help="graph surgery on an exported model without a checkpoint: expose its pooled features "
        "as the output 'features' (logits and cam unchanged) and update its card",
    )
    parser.add_argument("--name", default=None, help="model name (default: the output folder name)")
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument("--metrics", type=Path, default=None, help="metrics.json from `fetalcns evaluate`")
    parser.add_argument(
        "--cam-target",
        default=DEFAULT_CAM_TARGET,
        choices=CAM_TARGETS,
        help="what each class heatmap explains: its own logit (default; Grad-CAM as in Qi et al.) or "
        "its log-odds against normal (normal-contrast)",
    )
    parser.add_argument(
        "--aggregation",
        default="mean",
        choices=AGGREGATIONS,
        help="the patient rule serving applies: mean of image probabilities (default; Qi et al.), "
        "majority vote, or geomean (their renormalised product: images as independent evidence, "
        "for data where a lesion shows in only some of a patient's planes)",
    )
    parser.set_defaults(handler=run_export)


def run_add_features(model_dir: Path) -> int:
    from app.modelcard import ModelCardError
    from app.training.surgery import SurgeryError, add_features_output_to_model_dir

    try:
        entry = add_features_output_to_model_dir(model_dir)
    except (ModelCardError, SurgeryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"added output 'features' {entry['shape']} to {model_dir / 'model.onnx'}; card updated")
    return 0


def run_export(args: argparse.Namespace) -> int:
    if args.add_features_output is not None:
        if args.checkpoint is not None or args.out is not None:
            print("error: --add-features-output takes no --checkpoint or --out", file=sys.stderr)
            return 2
        return run_add_features(args.add_features_output)
    if args.checkpoint is None or args.out is None:
        print("error: --checkpoint and --out are required", file=sys.stderr)
        return 2
    from app.training.export import card_from_checkpoint, export_onnx
    from app.training.trainer import load_checkpoint

    try:
        model, payload = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, KeyError, RuntimeError) as exc:
        print(f"error: cannot read checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    card = card_from_checkpoint(payload, args.name or args.out.resolve().name, args.version)
    card["aggregation"] = args.aggregation
    if args.metrics is not None:
        card["metrics"] = json.loads(args.metrics.read_text(encoding="utf-8"))
    out = export_onnx(model, args.out, card, cam_target=args.cam_target)
    print(f"exported {out / 'model.onnx'} and {out / 'model.json'}")
    return 0
