"""`fetalcns predict PATH... [--model DIR] [--json OUT] [--overlays DIR] [--aggregate mean|vote]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.modelcard import AGGREGATIONS
from app.paths import DEFAULT_MODEL_NAME
from app.paths import default_model_dir as bundled_model_dir

MODEL_DIR_ENV = "FETALCNS_MODEL_DIR"
EXIT_BAD_INPUT = 2


def default_model_dir() -> Path:
    """$FETALCNS_MODEL_DIR, else the bundled demo model (app.paths)."""
    configured = os.environ.get(MODEL_DIR_ENV)
    if configured:
        return Path(configured)
    return bundled_model_dir()


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="suggest a diagnosis per patient for ultrasound studies",
        description="Read DICOM files, image exports, folders or ZIP archives; print a verdict per patient.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files, folders or ZIP archives")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help=f"model directory (default: ${MODEL_DIR_ENV} or models/{DEFAULT_MODEL_NAME})",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="write the full result as JSON"
    )
    parser.add_argument(
        "--overlays", type=Path, default=None, metavar="DIR", help="write Grad-CAM overlay PNGs"
    )
    parser.add_argument(
        "--aggregate", choices=AGGREGATIONS, default=None, help="patient rule (default: the model card's)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--max-frames", type=int, default=8, help="frames sampled per cine loop")
    parser.add_argument("--opacity", type=float, default=0.45, help="overlay opacity, 0..1")
    parser.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from app.inference.engine import InferenceEngine
    from app.inference.pipeline import analyse_paths
    from app.inference.runtime import EngineError
    from app.ingest import IngestOptions

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"error: not found: {', '.join(missing)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 0.0 <= args.opacity <= 1.0 or args.max_frames < 1:
        print("error: --opacity must be within 0..1 and --max-frames at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    model_dir = args.model or default_model_dir()
    try:
        engine = InferenceEngine(model_dir, device=args.device)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = analyse_paths(
        args.paths, engine, args.aggregate, IngestOptions(max_frames_per_cine=args.max_frames)
    )
    overlays = report.write_overlays(args.overlays, args.opacity) if args.overlays else None
    document = report.to_json(overlays)
    print_summary(document)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"JSON written to {args.json}")
    return 0


def print_summary(document: dict[str, Any]) -> None:
    """A readable verdict per patient, by patient_key (names and IDs are never printed)."""
    from app.inference.aggregate import describe_exclusions

    model = document["model"]
    print(f"model {model['name']} {model['version']} on {document['provider']}")
    if model.get("banner"):
        print(f"!! {model['banner']}")
    for patient in document["patients"]:
        verdict = patient["verdict"]
        line = f"{patient['patient_key']}: {verdict['label']}"
        if verdict["p_abnormal"] is not None:
            top = verdict["probabilities"][verdict["label"]]
            line += f" (p={top:.2f}, P(abnormal)={verdict['p_abnormal']:.2f}, {verdict['aggregation']})"
        line += f" — {verdict['n_used']} of {verdict['n_total']} image(s) used"
        if verdict["n_excluded"]:
            line += (
                f", {verdict['n_excluded']} left out ({describe_exclusions(verdict['excluded_by_reason'])})"
            )
        if verdict["reason"]:
            line += f" — {verdict['reason']}"
        print(line)
        for image in patient["images"]:
            if image["error"]:
                # The file name only: in an export <patient>/<image>.png the folder names the patient.
                frame = f" frame {image['frame']}" if image["frame"] is not None else ""
                print(f"  failed: {Path(image['source']).name}{frame}: {image['error']}")
    if document["rejected"]:
        print(f"{len(document['rejected'])} file(s) not used:")
        for rejection in document["rejected"]:
            # The name only: the folders above it are often named after the patient.
            print(f"  {Path(rejection['source']).name}: {rejection['reason']}")
    if not document["patients"]:
        print("no usable images were found")
