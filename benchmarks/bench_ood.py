"""How well the OOD signals separate held-out phantoms from images the model was never meant for.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_ood.py --id DIR --calib DIR [--model DIR] [--json OUT]

In distribution: the images of DIR (--id; the layout `fetalcns synth` writes, e.g. generator seed
2, held out). Out of distribution, all offline:

- vendor ultrasound: pydicom's and pydicom-data's US test files, ingested through app.ingest
  (cine loops sampled to 8 frames);
- CT / MR / CR / NM: pydicom's other test images;
- blank frames: uniform black, grey and white frames of a few sizes;
- noise: uniform, Gaussian and Rayleigh (speckle-like) noise frames;
- photographs: matplotlib's sample images (grace_hopper.jpg, Minduka_Present_Blue_Pack.png,
  logo2.png).

Reports per signal (energy, mahalanobis, combined) the AUROC of in-distribution vs each group
(sklearn.metrics.roc_auc_score, OOD as the positive class), and the rate at which the card's
rule flags each group. The combined score is max over signals of (score - threshold) /
(threshold - median of the calibration scores), which is above 0 exactly when the card's rule
flags; the calibration medians come from running the model over --calib.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from app.inference.engine import InferenceEngine
from app.ingest import IngestedImage, IngestOptions, ingest_paths
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


def dicom_images(names: tuple[str, ...]) -> tuple[list[IngestedImage], list[str]]:
    from pydicom.data import get_testdata_file

    paths = [get_testdata_file(name, download=False) for name in names]
    found = [Path(str(p)) for p in paths if p is not None]
    result = ingest_paths(found, IngestOptions(max_frames_per_cine=8))
    images = [image for study in result.studies for image in study.images]
    return images, [p.name for p in found]


def synthetic_frames(kind: str) -> list[IngestedImage]:
    rng = np.random.default_rng(0)
    frames = []
    for h, w in SIZES:
        if kind == "blank":
            for level in (0, 128, 255):
                frames.append(np.full((h, w, 3), level, np.uint8))
        else:
            grey = [
                rng.integers(0, 256, (h, w)),
                np.clip(rng.normal(128, 40, (h, w)), 0, 255),
                np.clip(rng.rayleigh(40, (h, w)), 0, 255),
                np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255),
                rng.integers(0, 256, (h, w, 3)),
            ]
            for g in grey:
                g = g.astype(np.uint8)
                frames.append(g if g.ndim == 3 else np.repeat(g[:, :, None], 3, axis=2))
    return [
        IngestedImage(source=f"{kind}-{i}", frame=None, pixels=f, scan_box=None, sha256="")
        for i, f in enumerate(frames)
    ]


def photos() -> tuple[list[IngestedImage], list[str]]:
    import matplotlib.cbook as cbook

    images, names = [], []
    for name in PHOTOS:
        try:
            path = Path(str(cbook.get_sample_data(name, asfileobj=False)))
        except (OSError, ValueError):
            continue
        images.append(IngestedImage(source=name, frame=None, pixels=read_rgb(path), scan_box=None, sha256=""))
        names.append(name)
    return images, names


def folder_images(data_dir: Path) -> list[IngestedImage]:
    return [
        IngestedImage(source=s.path.name, frame=None, pixels=read_rgb(s.path), scan_box=None, sha256="")
        for s in discover_samples(data_dir)
    ]


def score(engine: InferenceEngine, images: list[IngestedImage]) -> dict[str, np.ndarray]:
    predictions = [
        p for start in range(0, len(images), 16) for p in engine.predict(images[start : start + 16])
    ]
    methods = engine.ood_rule.methods
    out = {m: np.array([p.ood_scores[m] for p in predictions]) for m in methods}
    out["flagged"] = np.array([p.ood for p in predictions])
    out["quality"] = np.array([p.quality_issue is not None for p in predictions])
    for m in methods:
        out[f"flagged_{m}"] = np.array([m in p.ood_signals for p in predictions])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "fetal-cns-demo")
    parser.add_argument("--id", type=Path, required=True, help="held-out in-distribution images")
    parser.add_argument("--calib", type=Path, required=True, help="the calibration images (for medians)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    engine = InferenceEngine(args.model, device="cpu", threads=min(2, os.cpu_count() or 1))
    rule = engine.ood_rule
    calib = score(engine, folder_images(args.calib))
    medians = {s.method: float(np.median(calib[s.method])) for s in rule.signals}

    def combined(scores: dict[str, np.ndarray]) -> np.ndarray:
        return np.max(
            [(scores[s.method] - s.threshold) / (s.threshold - medians[s.method]) for s in rule.signals],
            axis=0,
        )

    vendor, vendor_names = dicom_images(VENDOR_US)
    other, other_names = dicom_images(OTHER_MODALITIES)
    photo, photo_names = photos()
    groups: dict[str, tuple[list[IngestedImage], str]] = {
        "vendor ultrasound (pydicom)": (vendor, ", ".join(vendor_names)),
        "CT / MR / CR / NM (pydicom)": (other, ", ".join(other_names)),
        "blank frames": (synthetic_frames("blank"), "uniform 0, 128, 255 at 4 sizes"),
        "noise frames": (synthetic_frames("noise"), "uniform, Gaussian, Rayleigh; grey and colour; 4 sizes"),
        "photographs (matplotlib)": (photo, ", ".join(photo_names)),
    }
    inside = score(engine, folder_images(args.id))
    inside["combined"] = combined(inside)
    calib["combined"] = combined(calib)
    report: dict[str, Any] = {
        "model": engine.card.name,
        "signals": {s.method: s.threshold for s in rule.signals},
        "calibration": {
            "images": len(calib["flagged"]),
            "flag_rate": float(calib["flagged"].mean()),
            "medians": medians,
        },
        "in_distribution": {
            "data": str(args.id),
            "images": len(inside["flagged"]),
            "false_flag_rate": float(inside["flagged"].mean()),
            **{f"false_flag_rate_{m}": float(inside[f"flagged_{m}"].mean()) for m in rule.methods},
            "quality_flag_rate": float(inside["quality"].mean()),
        },
        "groups": {},
    }
    pooled: dict[str, list[np.ndarray]] = {m: [] for m in (*rule.methods, "combined")}
    for name, (images, what) in groups.items():
        outside = score(engine, images)
        outside["combined"] = combined(outside)
        entry: dict[str, Any] = {"what": what, "images": len(images)}
        for m in (*rule.methods, "combined"):
            y = np.r_[np.zeros(len(inside[m])), np.ones(len(outside[m]))]
            entry[f"auroc_{m}"] = float(roc_auc_score(y, np.r_[inside[m], outside[m]]))
            pooled[m].append(outside[m])
        entry["flag_rate"] = float(outside["flagged"].mean())
        for m in rule.methods:
            entry[f"flag_rate_{m}"] = float(outside[f"flagged_{m}"].mean())
        entry["quality_flag_rate"] = float(outside["quality"].mean())
        entry["excluded_rate"] = float((outside["flagged"] | outside["quality"]).mean())
        report["groups"][name] = entry
    report["all_ood_auroc"] = {
        m: float(
            roc_auc_score(
                np.r_[np.zeros(len(inside[m])), np.ones(sum(len(v) for v in values))],
                np.r_[inside[m], *values],
            )
        )
        for m, values in pooled.items()
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
