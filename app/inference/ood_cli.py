"""`fetalcns calibrate-ood --model DIR --data DIR`: fit and calibrate the OOD rule (no torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# Defaults of app.inference.ood_calibration, here so that building the parser imports nothing heavy.
DEFAULT_PERCENTILE = 99.0
DEFAULT_MAX_FALSE_FLAG_RATE = 0.03
DEFAULT_FOLDS = 5


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate-ood",
        help="fit the Mahalanobis OOD signal and calibrate both OOD thresholds on held-out data",
        description=(
            "Run the model over held-out in-distribution images (DIR/<class>/<patient>/<image>, "
            "patients unseen by training and epoch selection); write MODEL/ood.npz and the OOD rule "
            "of MODEL/model.json (energy and Mahalanobis, flag if either exceeds its threshold; with "
            "--other-views also view_scope, MODEL/ood_views.npz)."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="model directory, e.g. models/NAME")
    parser.add_argument("--data", type=Path, required=True, help="held-out calibration images")
    parser.add_argument(
        "--percentile",
        type=float,
        default=DEFAULT_PERCENTILE,
        help="starting percentile of the calibration scores for each threshold "
        f"(default {DEFAULT_PERCENTILE:g})",
    )
    parser.add_argument(
        "--max-false-flag-rate",
        type=float,
        default=DEFAULT_MAX_FALSE_FLAG_RATE,
        help="raise the percentile until at most this fraction of calibration images is flagged "
        f"(default {DEFAULT_MAX_FALSE_FLAG_RATE:g})",
    )
    parser.add_argument(
        "--folds", type=int, default=DEFAULT_FOLDS, help="patient folds for out-of-fold scores"
    )
    parser.add_argument(
        "--shrinkage", type=float, default=None, help="covariance shrinkage in [0, 1] (default: Ledoit-Wolf)"
    )
    parser.add_argument(
        "--other-views",
        type=Path,
        default=None,
        help="non-CNS fetal views (fetalcns synth --other-views-only, a seed used nowhere else): fit the "
        "view_scope signal (ood_views.npz), an ultrasound view this model was not trained on",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.set_defaults(handler=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from app.inference.ood_calibration import CalibrationError, calibrate_ood
    from app.inference.runtime import EngineError
    from app.modelcard import ModelCardError
    from app.training.data import DatasetError

    try:
        ood = calibrate_ood(
            args.model,
            args.data,
            percentile=args.percentile,
            max_false_flag_rate=args.max_false_flag_rate,
            folds=args.folds,
            shrinkage=args.shrinkage,
            batch_size=args.batch_size,
            threads=args.threads,
            other_views=args.other_views,
        )
    except (CalibrationError, DatasetError, EngineError, ModelCardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mahalanobis = ood["combined_with"][0]
    print(f"calibrated on {ood['calibrated_on']}")
    print(f"  energy      > {ood['threshold']:.4f}  (false-flag rate {ood['false_flag_rate']:.4f})")
    print(
        f"  mahalanobis > {mahalanobis['threshold']:.4f}  "
        f"(false-flag rate {mahalanobis['false_flag_rate']:.4f}, shrinkage {mahalanobis['shrinkage']:.4f})"
    )
    for signal in ood["combined_with"][1:]:
        print(
            f"  {signal['method']:<11} > {signal['threshold']:.4f}  "
            f"(false-flag rate {signal['false_flag_rate']:.4f})"
        )
    print(
        f"  percentile {ood['percentile']:g}; any signal: expected false-flag rate "
        f"{ood['expected_false_flag_rate']:.4f}"
    )
    print(f"wrote {args.model / 'ood.npz'} and {args.model / 'model.json'}")
    return 0
