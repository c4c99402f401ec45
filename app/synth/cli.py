"""`fetalcns synth`: write a synthetic dataset, or a contact sheet of every class."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.labels import PAPER_CLASSES

log = logging.getLogger(__name__)


def _image_range(text: str) -> tuple[int, int]:
    parts = text.split("-")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, -1)
    except ValueError:
        low, high = 0, -1
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX with 1 <= MIN <= MAX (e.g. 3-6), got {text!r}")
    return low, high


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate synthetic fetal CNS ultrasound phantoms with lesion masks",
        description="Generate synthetic fetal CNS ultrasound studies (PNG and/or DICOM) with lesion "
        "masks and a manifest. Every image is marked synthetic; none depicts a patient.",
    )
    parser.add_argument("--out", type=Path, help="output folder for the dataset")
    parser.add_argument("--patients", type=int, default=50, help="number of patients (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; equal seeds give identical files")
    parser.add_argument("--format", choices=("png", "dicom", "both"), default="png", dest="fmt")
    parser.add_argument(
        "--images-per-patient", type=_image_range, default=(3, 6), metavar="MIN-MAX", help="default 3-6"
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        choices=PAPER_CLASSES,
        metavar="CLASS",
        help=f"subset of {', '.join(PAPER_CLASSES)}",
    )
    parser.add_argument(
        "--contact-sheet",
        type=Path,
        metavar="PNG",
        help="write one row per class (axial, coronal, spine) to PNG",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.out is None and args.contact_sheet is None:
        print("fetalcns synth: give --out DIR (a dataset) and/or --contact-sheet PNG", file=sys.stderr)
        return 2
    if args.contact_sheet is not None:
        from app.synth.contact_sheet import write_contact_sheet

        try:
            write_contact_sheet(args.contact_sheet, seed=args.seed)
        except OSError as error:
            reason = error.strerror or error
            print(f"fetalcns synth: cannot write {args.contact_sheet}: {reason}", file=sys.stderr)
            return 1
        log.info("contact sheet written to %s", args.contact_sheet)
    if args.out is not None:
        from app.synth.dataset import generate_dataset

        try:
            manifest = generate_dataset(
                args.out,
                args.patients,
                seed=args.seed,
                fmt=args.fmt,
                images_per_patient=args.images_per_patient,
                classes=args.classes,
                progress=True,
            )
        except ValueError as error:
            print(f"fetalcns synth: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            reason = error.strerror or error
            print(f"fetalcns synth: cannot write the dataset to {args.out}: {reason}", file=sys.stderr)
            return 1
        log.info("synthetic dataset written; manifest %s", manifest)
    return 0
