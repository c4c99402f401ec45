"""Throughput of the synthetic data generator: prints images per second for PNG and DICOM output.

Usage: .venv/bin/python benchmarks/bench_synth.py [--patients N] [--seed S]
Target: 20 ms or less per single-frame image (50 images/s) on one core.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from app.synth import generate_dataset
from app.synth.dataset import make_patient
from app.synth.scene import acquire, plan_view


def _stage_times(patients: int, seed: int) -> dict[str, float]:
    """CPU milliseconds per image spent drawing the scene and simulating acquisition, without file output."""
    totals = {"draw (incl. fitting the view)": 0.0, "acquire (B-mode + annotations)": 0.0}
    clock = time.process_time
    count = 0
    for index in range(patients):
        diagnosis = ("normal", "Rachischisis", "Encephalocele_meningocele")[index % 3]
        patient = make_patient(seed, index, diagnosis)
        rng = np.random.default_rng([seed, index])
        for plane in ("transthalamic", "coronal", "sagittal_spine"):  # every class is imaged in all
            start = clock()
            composition = plan_view(plane, patient.anatomy, rng)
            middle = clock()
            acquire(composition, rng)
            end = clock()
            totals["draw (incl. fitting the view)"] += middle - start
            totals["acquire (B-mode + annotations)"] += end - middle
            count += 1
    return {k: 1000 * v / count for k, v in totals.items()}


def _throughput(patients: int, seed: int, fmt: str) -> tuple[int, float, float]:
    """(images, wall seconds, CPU seconds of this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        start, start_cpu = time.perf_counter(), time.process_time()
        manifest = generate_dataset(Path(tmp), patients, seed=seed, fmt=fmt)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        with manifest.open() as handle:
            images = sum(1 for _ in csv.DictReader(handle))
    return images, elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_patient(args.seed, 0, "normal")  # warm caches (sector maps) outside the timings
    plan_view("transthalamic", make_patient(args.seed, 0, "normal").anatomy, np.random.default_rng(0))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpu cores: {os.cpu_count()}, 1-min load average at start: {load:.2f}")
    for stage, ms in _stage_times(max(3, args.patients // 2), args.seed).items():
        print(f"{stage:<34} {ms:7.1f} CPU ms/image")
    # On a shared machine wall time includes waiting for a core; CPU time is the generator's own cost.
    for fmt in ("png", "dicom"):
        images, seconds, cpu = _throughput(args.patients, args.seed, fmt)
        extra = " (stills, plus one 8-16 frame cine per patient)" if fmt == "dicom" else " (image + mask PNG)"
        print(
            f"{fmt:<6} {images} images: wall {images / seconds:6.1f} images/s "
            f"({1000 * seconds / images:6.1f} ms), "
            f"CPU {images / cpu:6.1f} images/s ({1000 * cpu / images:6.1f} ms){extra}"
        )


if __name__ == "__main__":
    main()
