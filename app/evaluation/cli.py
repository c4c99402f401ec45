"""`fetalcns evaluate`: run an exported model over labelled data; write metrics.json and report.html."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model directory on labelled data",
        description="Data layout: DIR/<class>/<patient>/<image> (as `fetalcns synth` writes it); "
        "lesion masks from DIR/manifest.csv give the localisation metrics.",
    )
    parser.add_argument("--model", type=Path, required=True, help="model directory, e.g. models/NAME")
    parser.add_argument("--data", type=Path, required=True, help="labelled data directory")
    parser.add_argument("--out", type=Path, required=True, help="report directory, e.g. reports/NAME/")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (patients)")
    parser.add_argument("--tolerance", type=int, default=5, help="pointing-game mask dilation, pixels")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="also score every image under 9 changes (gain, gamma, blur, JPEG, rotation, sector, mirror); "
        "about 10 times the scoring time",
    )
    parser.add_argument(
        "--ood",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders of out-of-distribution inputs, one group each, named by the folder (any files "
        "the app ingests: DICOM, PNG/JPEG, ZIP); reports each group's flag rate, the AUROC of each OOD "
        "signal against the --data images, and the fraction of its studies that still get a verdict",
    )
    parser.add_argument(
        "--compare-cam-model",
        type=Path,
        default=None,
        metavar="DIR",
        help="the same checkpoint exported with the other --cam-target: report the pointing game of "
        "both heatmap kinds (per class and plane) side by side",
    )
    parser.add_argument(
        "--update-card", action="store_true", help="copy the metrics into the model card's 'metrics'"
    )
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from app.evaluation.ood import OodDataError
    from app.evaluation.report import write_report
    from app.evaluation.runner import card_metrics, evaluate_model
    from app.inference.runtime import EngineError
    from app.modelcard import load_model_card, write_model_card
    from app.training.data import DatasetError

    try:
        evaluation = evaluate_model(
            args.model,
            args.data,
            n_bootstrap=args.bootstrap,
            tolerance_px=args.tolerance,
            threads=args.threads,
            robustness=args.robustness,
            ood_dirs=args.ood,
            compare_cam_model=args.compare_cam_model,
        )
    except (DatasetError, EngineError, OodDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = write_report(evaluation, args.out)
    summary = evaluation.metrics["summary"]
    print(f"report: {report}")
    print(f"  patient rule (the card's aggregation): {evaluation.metrics['patient_rule']}")
    for key, value in summary.items():
        print(f"  {key}: {'–' if value is None else f'{value:.3f}'}")
    if "robustness" in evaluation.metrics:
        print("  robustness (image accuracy, patient accuracy, served patient accuracy with the gate):")
        for row in evaluation.metrics["robustness"]["rows"]:
            print(
                f"    {row['name']}: {row['image_accuracy']:.3f}, {row['patient_accuracy_mean']:.3f}, "
                f"{row['patient_accuracy_served']:.3f}"
            )
    calibration = evaluation.metrics.get("calibration")
    if calibration:
        print(
            f"  calibration: temperature {calibration['temperature']:.4f}, image ECE "
            f"{calibration['image_ece_before']:.3f} before, {calibration['image_ece_after']:.3f} after"
        )
    comparison = evaluation.metrics["localisation"].get("comparison")
    if comparison:
        print(cam_comparison_summary(comparison))
    check = evaluation.metrics["ood"].get("check")
    if check:
        print(ood_summary(check))
    if args.update_card:
        card = load_model_card(args.model)
        write_model_card(args.model, {**card.raw, "metrics": card_metrics(evaluation.metrics)})
        print(f"metrics copied into {args.model / 'model.json'}")
    return 0


def cam_comparison_summary(comparison: dict[str, Any]) -> str:
    """Pointing game (true class) of each CAM target, overall and per class, as text lines."""
    lines = ["  pointing game by CAM target (true class):"]
    for target, row in comparison["targets"].items():
        per_class = ", ".join(f"{c} {_f(v['pointing_game_true_class'])}" for c, v in row["per_class"].items())
        lines.append(f"    {target}: {_f(row['pointing_game_true_class'])} ({per_class})")
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def ood_summary(check: dict[str, Any]) -> str:
    """The OOD check as a few lines of text: false flags, then one line per group and pooled."""
    inside = check["in_distribution"]
    methods = [*check["signals"], "combined"]
    lines = [
        f"  OOD check: in-distribution false flags {_f(inside['false_flag_rate'])} "
        f"({inside['flagged']}/{inside['images']} images)",
        "    group: images, studies, flagged, AUROC (" + ", ".join(methods) + "), studies with a verdict",
    ]
    for group in [*check["groups"], check["pooled"]]:
        aurocs = ", ".join(_f(group["auroc"][m]) for m in methods)
        lines.append(
            f"    {group['name']}: {group['images']}, {group['studies']}, {_f(group['flag_rate'])}, "
            f"({aurocs}), {_f(group['verdict_fraction'])} ({group['studies_with_verdict']})"
        )
    return "\n".join(lines)
