"""Helpers for the ingestion, inference and predict tests: vendor files and hand-made inputs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from app.ingest import IngestedImage


def vendor_file(name: str) -> Path:
    """A file from pydicom's or pydicom-data's bundled test files, offline only."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(str(path))


def make_us_dataset(
    pixels: np.ndarray,
    patient_id: str = "PID-12345",
    patient_name: str = "Doe^Jane",
    study_uid: str | None = None,
    photometric: str | None = None,
    **attributes: object,
) -> Dataset:
    """A minimal valid ultrasound DICOM dataset holding uint8 grey (H×W) or RGB (H×W×3) pixels."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.Modality = "US"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if pixels.ndim == 3 else "MONOCHROME2")
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def write_dataset(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def phantom(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """A grey fan-shaped 'scan' with speckle on black, like an ultrasound frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    radius = np.hypot(yy - 0.0, xx - width / 2)
    fan = (radius < height * 0.95) & (np.abs(xx - width / 2) < (yy + 10) * 0.9)
    image = np.zeros((height, width), np.uint8)
    image[fan] = np.clip(rng.normal(110, 30, fan.sum()), 0, 255).astype(np.uint8)
    return image


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def as_ingested(
    pixels: np.ndarray, scan_box: tuple[int, int, int, int] | None = None, name: str = "x"
) -> IngestedImage:
    """An IngestedImage built straight from display pixels (what ingestion would hand over)."""
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
    return IngestedImage(source=name, frame=None, pixels=rgb, scan_box=scan_box, sha256="0" * 64, metadata={})


def copy_model_with_card(source: Path, target: Path, **card_fields: object) -> Path:
    """A copy of a model directory whose card has some top-level fields replaced."""
    import json
    import shutil

    from app.modelcard import write_model_card

    shutil.copytree(source, target)
    card = json.loads((target / "model.json").read_text())
    card.update(card_fields)
    write_model_card(target, card)
    return target
