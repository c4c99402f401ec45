"""Inputs for the verdict-gate tests: pictures the demo model flags, and scans it takes.

The bundled demo model flags ``photo_like`` pictures (colour gradients and discs, nothing like
a B-mode scan) as out of distribution with a wide margin (energy about -1 to -3 against its
card's threshold of -4.3) and takes synthetic ultrasound (app.synth) as familiar (about -6
to -19). tests/test_verdict_gate.py checks both claims before relying on them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def photo_like(seed: int, height: int = 480, width: int = 640) -> np.ndarray:
    """An RGB picture of colour gradients and discs: not an ultrasound image (uint8 H×W×3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy + seed * 40) % 256], -1).astype(np.uint8)
    for _ in range(6):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(10, 60)), colour, -1)
    return image


def synthetic_scans(out: Path, n: int = 3) -> list[np.ndarray]:
    """``n`` synthetic normal ultrasound images (RGB, 480×640) of one patient, from app.synth."""
    from app.synth import generate_dataset

    generate_dataset(out, n_patients=1, seed=4242, fmt="png", images_per_patient=(n, n), classes=["normal"])
    paths = sorted((out / "normal").rglob("*.png"))
    assert len(paths) == n, paths
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def png_file(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()
