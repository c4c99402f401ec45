"""Synthetic DICOM studies: valid files, cine loops, ultrasound regions, provenance, reproducibility."""

from __future__ import annotations

import csv
import filecmp
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from app.preprocess import find_scan_area
from app.synth import generate_dataset
from app.synth.dicomio import US_IMAGE_STORAGE, US_MULTIFRAME_STORAGE
from app.synth.geometry import sector_maps
from app.synth.scene import DEFAULT_SECTOR

UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


@pytest.fixture(scope="module")
def study_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth-dicom")
    generate_dataset(out, 2, seed=21, fmt="both", images_per_patient=(2, 3))
    return out


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pydicom.dcmread(path)
        _ = ds.pixel_array
    return ds


def _files(root: Path) -> list[Path]:
    return sorted((root / "dicom").rglob("*.dcm"))


def test_each_patient_is_one_study_with_stills_and_a_cine(study_root: Path) -> None:
    patients = sorted(p for p in (study_root / "dicom").glob("*/*") if p.is_dir())
    assert len(patients) == 2
    study_uids = set()
    for folder in patients:
        datasets = [_read(p) for p in sorted(folder.glob("*.dcm"))]
        assert len({ds.StudyInstanceUID for ds in datasets}) == 1
        assert len({ds.PatientID for ds in datasets}) == 1 and datasets[0].PatientID == folder.name
        study_uids.add(datasets[0].StudyInstanceUID)
        classes = [ds.SOPClassUID for ds in datasets]
        assert classes.count(US_MULTIFRAME_STORAGE) == 1
        assert classes.count(US_IMAGE_STORAGE) >= 2
        series = {ds.SeriesNumber: ds.SeriesInstanceUID for ds in datasets}
        assert len(set(series.values())) == len(series) == 2
        for ds in datasets:
            for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
                assert UID.match(uid) and len(uid) <= 64
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert "synthetic" in ds.ImageComments
            assert str(ds.PatientName).startswith("SYNTHETIC")
            assert re.fullmatch(r"\d{8}", ds.StudyDate)
    assert len(study_uids) == 2


def test_cine_has_8_to_16_frames_with_slight_motion(study_root: Path) -> None:
    for path in (study_root / "dicom").rglob("CINE*.dcm"):
        ds = _read(path)
        frames = ds.pixel_array
        assert 8 <= int(ds.NumberOfFrames) <= 16 and frames.shape[0] == int(ds.NumberOfFrames)
        assert ds.FrameIncrementPointer == 0x00181063 and float(ds.FrameTime) > 0
        difference = np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean()
        assert 1.0 < difference < 60.0


def test_mix_of_rgb_and_monochrome_and_pixels_match_the_png(study_root: Path) -> None:
    photometric = set()
    for path in _files(study_root):
        ds = _read(path)
        photometric.add(ds.PhotometricInterpretation)
    assert photometric == {"RGB", "MONOCHROME2"}
    folder = next(p for p in (study_root / "dicom").glob("*/*") if p.is_dir())
    still = _read(folder / "IM0001.dcm").pixel_array
    png = next((study_root / folder.parent.name / folder.name).glob("01_*.png"))
    grey = still if still.ndim == 2 else still[:, :, 0]
    assert np.array_equal(grey, np.asarray(Image.open(png)))


def test_ultrasound_region_describes_the_sector(study_root: Path) -> None:
    top, bottom, left, right = sector_maps(DEFAULT_SECTOR).box
    for path in _files(study_root):
        ds = _read(path)
        (region,) = ds.SequenceOfUltrasoundRegions
        assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == (left, top)
        assert (region.RegionLocationMaxX1, region.RegionLocationMaxY1) == (right - 1, bottom - 1)
        assert region.RegionSpatialFormat == 1 and region.RegionDataType == 1
        assert region.PhysicalUnitsXDirection == region.PhysicalUnitsYDirection == 3
        # The depth ruler's span: sector depth in cm over its radial extent in pixels.
        depth_cm = region.PhysicalDeltaY * (DEFAULT_SECTOR.r_max - DEFAULT_SECTOR.r_min)
        assert 4.0 <= depth_cm <= 45.0 and depth_cm == pytest.approx(round(depth_cm), abs=1e-9)
        pixels = ds.pixel_array if int(ds.get("NumberOfFrames", 1)) == 1 else ds.pixel_array[0]
        grey = pixels if pixels.ndim == 2 else pixels[..., 0]
        found_top, found_bottom, found_left, found_right = find_scan_area(grey)
        assert abs(found_top - region.RegionLocationMinY0) <= 5
        assert abs(found_bottom - 1 - region.RegionLocationMaxY1) <= 5
        assert abs(found_left - region.RegionLocationMinX0) <= 5
        assert abs(found_right - 1 - region.RegionLocationMaxX1) <= 5


def test_gestational_age_is_in_the_acquisition_context(study_root: Path) -> None:
    with (study_root / "manifest.csv").open() as handle:
        ages = {r["patient_id"]: float(r["gestational_age_weeks"]) for r in csv.DictReader(handle)}
    for path in _files(study_root):
        ds = _read(path)
        (item,) = ds.AcquisitionContextSequence
        code = item.ConceptNameCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == ("11884-4", "LN")
        assert item.MeasurementUnitsCodeSequence[0].CodeValue == "wk"
        assert float(item.NumericValue) == pytest.approx(ages[ds.PatientID])


def test_dcmtk_reads_every_file(study_root: Path) -> None:
    dcmdump = shutil.which("dcmdump")
    if dcmdump is None:
        pytest.skip("dcmtk's dcmdump is not installed (apt-get install dcmtk); independent check skipped")
    for path in _files(study_root):
        result = subprocess.run([dcmdump, "-q", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert "E:" not in result.stderr and "W:" not in result.stderr, result.stderr


def test_dciodvfy_finds_no_error_in_any_file(study_root: Path) -> None:
    """dicom3tools' IOD checker: warnings (the standard extended acquisition context) are allowed,
    errors are not (it used to flag the missing Type 2C Laterality)."""
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dicom3tools' dciodvfy is not installed (apt-get install dicom3tools)")
    for path in _files(study_root):
        result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (path.name, errors)


def test_same_seed_gives_identical_dicom_bytes(study_root: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, 2, seed=21, fmt="dicom", images_per_patient=(2, 3))
    files = [p.relative_to(study_root) for p in _files(study_root)]
    match, mismatch, errors = filecmp.cmpfiles(study_root, tmp_path, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
