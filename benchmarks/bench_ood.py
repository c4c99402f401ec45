"""The offline OOD corpus for `fetalcns evaluate --ood`, and which of its images the rule misses.

    PYTHONPATH=. python benchmarks/bench_ood.py --write-corpus DIR
    fetalcns evaluate --model models/fetal-cns-demo --data HELD_OUT --out REPORT \\
        --ood DIR/vendor_us DIR/ct_mr DIR/blank DIR/noise DIR/photos [more groups...]
    PYTHONPATH=. python benchmarks/bench_ood.py --id HELD_OUT --ood DIR/vendor_us ... [--json OUT]

--write-corpus writes one folder per group, all from files already on this machine:

- vendor_us/: pydicom's and pydicom-data's ultrasound test files (cine loops are sampled as
  ingestion samples them, 8 frames);
- ct_mr/: pydicom's CT, MR, CR and NM test images;
- blank/: uniform black, grey and white frames (PNG), one study folder per size (4 sizes);
- noise/: uniform, Gaussian and Rayleigh noise frames, grey and colour (PNG), one study folder
  per size;
- photos/: matplotlib's sample photographs.

Only ``pydicom.data.get_testdata_file(name, download=False)`` is used: nothing is downloaded.

--id / --ood runs the product's check (app.evaluation.ood, what `fetalcns evaluate --ood`
reports) and adds, per group, the sources of the images the rule did not flag; it prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.evaluation.ood import evaluate_ood_dirs, ood_block
from app.inference.engine import InferenceEngine
from app.ingest import IngestedImage
from app.training.data import discover_samples, read_rgb

REPO = Path(__file__).resolve().parent.parent
VENDOR_US = (
    "US1_UNCR.dcm",
    "OBXXXX1A.dcm",
    "gdcm-US-ALOKA-16.dcm",
    "color3d_jpeg_baseline.dcm",
    "examples_rgb_color.dcm",
    "examples_palette.dcm",
)
OTHER_MODALITIES = (
    "CT_small.dcm",
    "693_UNCR.dcm",
    "MR_small.dcm",
    "emri_small.dcm",
    "MR2_UNCR.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "RG1_UNCR.dcm",
    "JPEG2000.dcm",
)
PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")
SIZES = ((480, 640), (600, 800), (224, 224), (768, 1024))


def copy_dicom(names: tuple[str, ...], out: Path) -> list[str]:
    from pydicom.data import get_testdata_file

    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        found = get_testdata_file(name, download=False)
        if found is not None:
            shutil.copy(str(found), out / name)
            copied.append(name)
    return copied


def synthetic_frames(kind: str) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """Frames by size and name: blank (0, 128, 255) or noise (5 kinds), as in the earlier benchmark."""
    rng = np.random.default_rng(0)
    frames: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for h, w in SIZES:
        if kind == "blank":
            frames[(h, w)] = {
                name: np.full((h, w, 3), level, np.uint8)
                for name, level in (("black", 0), ("grey", 128), ("white", 255))
            }
            continue
        grey = {
            "uniform": rng.integers(0, 256, (h, w)),
            "gaussian": np.clip(rng.normal(128, 40, (h, w)), 0, 255),
            "rayleigh": np.clip(rng.rayleigh(40, (h, w)), 0, 255),
            "gaussian_rgb": np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255),
            "uniform_rgb": rng.integers(0, 256, (h, w, 3)),
        }
        frames[(h, w)] = {}
        for name, values in grey.items():
            g = values.astype(np.uint8)
            frames[(h, w)][name] = g if g.ndim == 3 else np.repeat(g[:, :, None], 3, axis=2)
    return frames


def write_frames(kind: str, out: Path) -> int:
    count = 0
    for (h, w), named in synthetic_frames(kind).items():
        folder = out / f"{kind}-{h}x{w}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, rgb in named.items():
            cv2.imwrite(str(folder / f"{name}.png"), np.ascontiguousarray(rgb[:, :, ::-1]))
            count += 1
    return count


def copy_photos(out: Path) -> list[str]:
    import matplotlib.cbook as cbook

    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in PHOTOS:
        try:
            path = Path(str(cbook.get_sample_data(name, asfileobj=False)))
        except (OSError, ValueError):
            continue
        shutil.copy(path, out / name)
        copied.append(name)
    return copied


def write_corpus(out: Path) -> dict[str, Any]:
    return {
        "vendor_us": copy_dicom(VENDOR_US, out / "vendor_us"),
        "ct_mr": copy_dicom(OTHER_MODALITIES, out / "ct_mr"),
        "blank": write_frames("blank", out / "blank"),
        "noise": write_frames("noise", out / "noise"),
        "photos": copy_photos(out / "photos"),
    }


def measure(model: Path, id_dir: Path, ood_dirs: list[Path]) -> dict[str, Any]:
    engine = InferenceEngine(model, device="cpu", threads=min(2, os.cpu_count() or 1))
    rule = engine.ood_rule
    samples = discover_samples(id_dir, engine.classes)
    images = [
        IngestedImage(source=s.path.name, frame=None, pixels=read_rgb(s.path), scan_box=None, sha256="")
        for s in samples
    ]
    inside = engine.predict(images)
    groups = evaluate_ood_dirs(engine, ood_dirs)
    check = ood_block(
        rule,
        {m: np.array([p.ood_scores.get(m, np.nan) for p in inside]) for m in rule.methods},
        np.array([p.ood for p in inside], bool),
        [p.ood_signals for p in inside],
        [],  # per-patient verdicts of the held-out set: see `fetalcns evaluate`
        groups,
        id_patients=[s.patient for s in samples],
    )
    check["missed"] = {
        g.name: [
            {"source": Path(src).name, **{m: float(g.scores[m][i]) for m in rule.methods}}
            for i, src in enumerate(g.sources)
            if not g.flagged[i]
        ]
        for g in groups
    }
    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-corpus", type=Path, default=None, metavar="DIR")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "fetal-cns-demo")
    parser.add_argument("--id", type=Path, default=None, help="held-out in-distribution images")
    parser.add_argument("--ood", type=Path, nargs="+", default=[], metavar="DIR")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.write_corpus is None and args.id is None:
        parser.error("give --write-corpus DIR, or --id DIR --ood DIR [DIR ...]")
    if args.write_corpus is not None:
        print(json.dumps({"corpus": str(args.write_corpus), **write_corpus(args.write_corpus)}, indent=2))
    if args.id is not None:
        text = json.dumps(measure(args.model, args.id, args.ood), indent=2)
        print(text)
        if args.json:
            args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
