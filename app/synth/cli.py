"""`fetalcns synth`: write a synthetic dataset, or a contact sheet of every class."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.labels import PAPER_CLASSES
from app.synth.sites import SITE_MIX_RANDOM, SITES

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


def _site_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SITES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown sites {unknown or text!r}; choose from {', '.join(SITES)}")
    return names


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
        "--images-per-patient",
        type=_image_range,
        default=(5, 7),
        metavar="MIN-MAX",
        help="default 5-7: each standard plane once, then repeats",
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        choices=PAPER_CLASSES,
        metavar="CLASS",
        help=f"subset of {', '.join(PAPER_CLASSES)}",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--sites",
        type=_site_list,
        metavar="A,B,...",
        help=f"spread patients over these scanner sites (class-balanced per site); choose from "
        f"{', '.join(SITES)}; default: one default site",
    )
    where.add_argument(
        "--site-mix",
        choices=(SITE_MIX_RANDOM,),
        help="draw each patient's site at random from all sites",
    )
    parser.add_argument(
        "--contact-sheet",
        type=Path,
        metavar="PNG",
        help="write one row per class (axial, coronal, spine) and a row per site and variant to PNG",
    )
    others = parser.add_argument_group(
        "non-CNS views",
        "abdomen, femur, four-chamber heart and face profile: out of the classifier's scope, for "
        "testing its out-of-distribution check. They go to DIR/other_views/<patient>/ (PNG) and "
        "DIR/dicom/other_views/<patient>/ (DICOM), with view_scope=other in the manifest and no "
        "mask; training never reads them. CNS images of a seed stay byte-identical.",
    )
    which = others.add_mutually_exclusive_group()
    which.add_argument(
        "--include-other-views", action="store_true", help="add a few non-CNS views per patient"
    )
    which.add_argument(
        "--other-views-only",
        action="store_true",
        help="write only the non-CNS views (no CNS images, no masks), e.g. for evaluate's OOD check",
    )
    others.add_argument(
        "--other-views-per-patient",
        type=_image_range,
        default=(1, 3),
        metavar="MIN-MAX",
        help="distinct non-CNS planes per patient (default 1-3, at most 4)",
    )
    others.add_argument(
        "--other-views-sheet",
        type=Path,
        metavar="PNG",
        help="write a contact sheet of the non-CNS planes (one column per plane) to PNG",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.out is None and args.contact_sheet is None and args.other_views_sheet is None:
        print(
            "fetalcns synth: give --out DIR (a dataset) and/or --contact-sheet PNG / --other-views-sheet PNG",
            file=sys.stderr,
        )
        return 2
    from app.synth import contact_sheet

    for path, write in (
        (args.contact_sheet, contact_sheet.write_contact_sheet),
        (args.other_views_sheet, contact_sheet.write_other_views_sheet),
    ):
        if path is None:
            continue
        try:
            write(path, seed=args.seed)
        except OSError as error:
            reason = error.strerror or error
            print(f"fetalcns synth: cannot write {path}: {reason}", file=sys.stderr)
            return 1
        log.info("contact sheet written to %s", path)
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
                include_other_views=args.include_other_views,
                other_views_only=args.other_views_only,
                other_views_per_patient=args.other_views_per_patient,
                command=getattr(args, "command_line", None),
                sites=args.sites,
                site_mix=args.site_mix,
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
