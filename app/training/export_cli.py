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
    parser.add_argument(
        "--quantize",
        choices=("int8", "fp16"),
        default=None,
        help="also write a faster variant beside model.onnx (int8 for CPUs, fp16 for GPUs), checked "
        "against fp32 on held-out patients of --quantize-data and recorded in the card; without "
        "--checkpoint, of the model already in --out",
    )
    parser.add_argument(
        "--quantize-data",
        type=Path,
        default=None,
        help="a dataset with manifest.csv (`fetalcns synth`): every third patient calibrates int8, the "
        "others are held out for the parity check",
    )
    parser.add_argument(
        "--max-prob-diff",
        type=float,
        default=None,
        help="the parity check's bound on any image's probability difference (int8 0.05, fp16 0.01)",
    )
    parser.set_defaults(handler=run_export)


def run_quantize(args: argparse.Namespace) -> int:
    from app.modelcard import ModelCardError
    from app.training.variants import VariantError, make_variant

    if args.quantize_data is None:
        print(
            "error: --quantize needs --quantize-data DIR (calibration and held-out patients)", file=sys.stderr
        )
        return 2
    try:
        entry = make_variant(args.out, args.quantize, args.quantize_data, args.max_prob_diff)
    except (ModelCardError, VariantError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parity = entry["parity"]
    verdict = "passed" if parity["passed"] else "FAILED (serving will refuse this variant)"
    print(f"wrote {args.out / entry['file']}: parity {verdict}: {parity['summary']}")
    return 0 if parity["passed"] else 1


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
    if args.quantize is not None and args.checkpoint is None:
        if args.out is None:
            print("error: --quantize needs --out MODEL_DIR", file=sys.stderr)
            return 2
        return run_quantize(args)
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
    if args.quantize is not None:
        return run_quantize(args)
    return 0
