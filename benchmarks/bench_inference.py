"""Time per image for each serving stage: decode, preprocessing, inference and rendering.

    .venv/bin/python benchmarks/bench_inference.py [--model DIR] [--threads N] [--repeat R]

Inputs: a synthetic DICOM study set (app.synth) plus vendor ultrasound files from pydicom's
test data (RGB, JPEG 2000, palette, a JPEG YBR_FULL_422 cine). Without --model it uses
models/fetal-cns-demo, or, when that is absent, exports a tiny untrained model (needs torch).
Prints the median over repeats, in milliseconds per image.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.inference.engine import InferenceEngine
from app.inference.render import encode_png, heatmap_rgba, overlay, thumbnail
from app.ingest import IngestedImage, IngestOptions, ingest_paths
from app.preprocess import find_scan_area

REPO = Path(__file__).resolve().parent.parent
VENDOR_FILES = ("US1_UNCR.dcm", "US1_J2KR.dcm", "OBXXXX1A.dcm", "color3d_jpeg_baseline.dcm")


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prepare_inputs(scratch: Path) -> list[Path]:
    from pydicom.data import get_testdata_file

    from app.synth import generate_dataset

    generate_dataset(scratch / "synth", n_patients=5, seed=1, fmt="dicom", images_per_patient=(3, 3))
    vendor = [Path(str(get_testdata_file(name, download=False))) for name in VENDOR_FILES]
    return [scratch / "synth" / "dicom", *vendor]


def resolve_model(requested: Path | None, scratch: Path) -> Path:
    if requested is not None:
        return requested
    demo = REPO / "models" / "fetal-cns-demo"
    if (demo / "model.json").is_file():
        return demo
    from app.training.export import export_untrained_demo

    print("models/fetal-cns-demo is absent: timing a tiny untrained model (width 0.125)")
    return export_untrained_demo(scratch / "tiny", width=0.125, seed=0)


def render_all(images: list[IngestedImage], cams: list[np.ndarray]) -> None:
    for image, cam in zip(images, cams, strict=True):
        encode_png(overlay(image.pixels, cam))
        encode_png(heatmap_rgba(cam))
        encode_png(thumbnail(image.pixels))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        inputs = prepare_inputs(scratch)
        engine = InferenceEngine(
            resolve_model(args.model, scratch), batch_size=args.batch_size, threads=args.threads
        )
        options = IngestOptions(max_frames_per_cine=8)
        result = ingest_paths(inputs, options)
        images = [image for study in result.studies for image in study.images]
        n = len(images)
        pixels = sum(image.pixels.shape[0] * image.pixels.shape[1] for image in images) / n
        card = engine.card
        print(f"model {card.name} {card.version} ({card.raw['architecture']}) on {engine.provider}")
        print(f"{n} images in {len(result.studies)} studies, mean {pixels / 1e6:.2f} Mpx")

        decode = median_seconds(lambda: ingest_paths(inputs, options), args.repeat)
        prepared = [engine.preprocess(image) for image in images]
        preprocess = median_seconds(lambda: [engine.preprocess(image) for image in images], args.repeat)
        detect = median_seconds(lambda: [find_scan_area(image.pixels) for image in images], args.repeat)
        batch = np.stack([x for x, _ in prepared])

        def run_batches() -> None:
            for start in range(0, n, args.batch_size):
                engine.run_batch(batch[start : start + args.batch_size])

        engine.run_batch(batch[: args.batch_size])  # warm-up: first run allocates
        inference = median_seconds(run_batches, args.repeat)
        single = median_seconds(lambda: [engine.run_batch(batch[i : i + 1]) for i in range(n)], args.repeat)
        full = median_seconds(lambda: engine.predict(images), args.repeat)
        predictions = engine.predict(images)
        cams = [p.cam for p in predictions]
        render = median_seconds(lambda: render_all(images, cams), args.repeat)

        rows = [
            ("decode (ingest_paths: read, decode, convert to display RGB)", decode),
            ("preprocessing (scan area, crop, resize, normalise)", preprocess),
            ("scan-area detection alone (find_scan_area on every image, DICOM region or not)", detect),
            (f"inference (ONNX Runtime, batch {args.batch_size})", inference),
            ("inference (ONNX Runtime, batch 1)", single),
            ("predict() total (preprocessing + inference + CAM upsampling + flags)", full),
            ("rendering (overlay + RGBA heatmap + thumbnail, each PNG-encoded)", render),
        ]
        for label, seconds in rows:
            print(f"{seconds / n * 1000:8.2f} ms/image  {label}")


if __name__ == "__main__":
    main()
