"""`fetalcns train`: patient-grouped cross-validation or a final fit of the paper's classifier."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the ResNet classifier (needs the [train] extra)",
        description="Train on DIR/<class>/<patient>/<image> (the layout `fetalcns synth` writes). "
        "Without --final: patient-grouped cross-validation, one checkpoint per fold. With --final: one "
        "fit on all patients (a patient-grouped validation split only picks the epoch), for export.",
    )
    parser.add_argument("--data", type=Path, required=True, help="training data directory")
    parser.add_argument("--out", type=Path, required=True, help="run directory, e.g. runs/NAME")
    parser.add_argument("--arch", default="resnet34", choices=["resnet34", "resnet18"])
    parser.add_argument("--width", type=float, default=0.25, help="channel width multiplier (1.0 = paper)")
    parser.add_argument(
        "--output-stride",
        type=int,
        default=32,
        choices=[32, 16],
        help="layer4 (Grad-CAM) stride: 32 = 7x7 CAM at 224; 16 = dilated layer4, 14x14 CAM",
    )
    parser.add_argument(
        "--pooling",
        default="avg",
        choices=["avg", "lse"],
        help="global pooling before the classifier: avg (the paper) or lse (log-sum-exp)",
    )
    parser.add_argument(
        "--lse-sharpness",
        type=float,
        default=4.0,
        help="--pooling lse: r in (1/r) log mean exp(r A); small r ≈ average, large r ≈ maximum",
    )
    parser.add_argument("--epochs", type=int, default=20)
    protocol = parser.add_mutually_exclusive_group()
    protocol.add_argument("--folds", type=int, default=5, help="patient-grouped folds (default 5)")
    protocol.add_argument("--lopo", action="store_true", help="leave-one-patient-out cross-validation")
    protocol.add_argument("--final", action="store_true", help="one final fit for a shipped model")
    protocol.add_argument(
        "--group-by",
        metavar="COLUMN",
        default=None,
        help="leave-one-group-out cross-validation over a manifest.csv column (e.g. site): one fold "
        "per distinct value, trained on the other groups and evaluated on the held-out one",
    )
    parser.add_argument("--val-fraction", type=float, default=0.15, help="--final: epoch-selection patients")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, cosine)")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="MINUTES",
        help="stop each fit after this long; the learning-rate schedule shrinks to fit",
    )
    parser.add_argument("--no-augment", action="store_true", help="disable augmentation")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: up to 2)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_train)


def group_lines(summary: dict[str, Any]) -> str:
    """Per held-out group of a --group-by run, one line each; empty for other protocols."""
    lines = [
        f"  {summary['group_by']} {name}: {row['patients']} patients, {row['images']} images; "
        f"patient accuracy {row['patient_accuracy']:.3f}, image accuracy {row['image_accuracy']:.3f}"
        for name, row in summary.get("per_group", {}).items()
    ]
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> int:
    from app.training.data import DatasetError
    from app.training.experiment import cross_validate, final_fit
    from app.training.trainer import TrainConfig, configure_threads

    if args.epochs < 1 or args.width <= 0 or args.batch_size < 2 or args.lse_sharpness <= 0:
        print(
            "error: --epochs must be ≥ 1, --width > 0, --batch-size ≥ 2 and --lse-sharpness > 0",
            file=sys.stderr,
        )
        return 2
    threads = configure_threads(args.threads)
    config = TrainConfig(
        arch=args.arch,
        width=args.width,
        output_stride=args.output_stride,
        pooling=args.pooling,
        lse_sharpness=args.lse_sharpness,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        augment=not args.no_augment,
        progress=not args.no_progress,
        time_budget_s=None if args.time_budget is None else 60.0 * args.time_budget,
    )
    log.info(
        "training %s width %g (output stride %d, %s pooling) for %d epochs on %d threads",
        args.arch,
        args.width,
        args.output_stride,
        args.pooling,
        args.epochs,
        threads,
    )
    try:
        if args.final:
            checkpoint = final_fit(args.data, args.out, config, val_fraction=args.val_fraction)
            print(f"final model: {checkpoint} (export it with: fetalcns export --checkpoint {checkpoint})")
        else:
            summary = cross_validate(
                args.data, args.out, config, folds=args.folds, lopo=args.lopo, group_by=args.group_by
            )
            print(
                f"{summary['protocol']}: out-of-fold patient accuracy "
                f"{summary['out_of_fold_patient_accuracy']:.3f}; details in {args.out / 'cv.json'}"
            )
            if summary.get("per_group"):
                print(group_lines(summary))
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
