"""Helpers for the DICOM networking tests: free loopback ports in 11100-11199, dcmtk tools, files."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ingest_support import make_us_dataset, write_dataset
from pydicom.uid import generate_uid

PORT_RANGE = range(11100, 11200)


def free_port() -> int:
    """A loopback port of the range these tests may use that nothing listens on now."""
    for port in PORT_RANGE:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 11100-11199")


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install dcmtk dicom3tools; see `make system-deps`)")
    return path


def storescu(
    port: int, files: list[Path], calling: str = "STORESCU", called: str = "FETALCNS", *options: str
) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu sending ``files`` in one association (verbose, so statuses are printed)."""
    command = [need_tool("storescu"), "-v", *options, "-aet", calling, "-aec", called, "127.0.0.1", str(port)]
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=120)


def us_speckle(seed: int, height: int = 200, width: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    fan = (np.abs(np.arctan2(xx - width / 2, yy + 10)) < 0.7) & (
        np.hypot(xx - width / 2, yy + 10) < height * 0.95
    )
    return (rng.gamma(2.0, 40.0, size=(height, width)) * fan).clip(0, 255).astype(np.uint8)


def us_study(folder: Path, n: int, patient_id: str = "PID-DICOM-1", seed: int = 0) -> tuple[str, list[Path]]:
    """``n`` single-frame US instances of one new study; returns (StudyInstanceUID, paths)."""
    study_uid = generate_uid()
    series_uid = generate_uid()
    paths = []
    for i in range(n):
        ds = make_us_dataset(
            us_speckle(seed + i),
            patient_id=patient_id,
            patient_name="Testpatient^Erika",
            study_uid=study_uid,
            SeriesInstanceUID=series_uid,
            InstanceNumber=i + 1,
            StudyDate="20250314",
        )
        paths.append(write_dataset(ds, folder / f"us{i}.dcm"))
    return study_uid, paths
