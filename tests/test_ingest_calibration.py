"""The physical scale of a DICOM ultrasound image (its tissue region's PhysicalDeltaX/Y in cm),
the plane and frame timing kept in the metadata, and the two ways of taking a loop's frames."""

from __future__ import annotations

import numpy as np
import pytest
from ingest_support import make_us_dataset, phantom, write_dataset
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from app.ingest import IngestOptions, ingest_paths
from app.ingest.regions import calibration


def _region(
    box: tuple[int, int, int, int], delta: tuple[float, float], units: int = 3, kind: int = 1
) -> Dataset:
    region = Dataset()
    region.RegionDataType = kind
    (
        region.RegionLocationMinX0,
        region.RegionLocationMinY0,
        region.RegionLocationMaxX1,
        region.RegionLocationMaxY1,
    ) = box
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = units
    region.PhysicalDeltaX, region.PhysicalDeltaY = delta
    return region


def test_calibration_of_the_largest_tissue_region_in_cm() -> None:
    small = _region((0, 0, 40, 40), (0.05, 0.05))
    large = _region((10, 20, 300, 220), (0.021, 0.034))
    doppler = _region((0, 0, 319, 239), (0.01, 0.01), kind=3)  # a spectral strip: not tissue
    result = calibration([small, large, doppler], 240, 320)
    assert result is not None
    assert result["mm_per_px_x"] == pytest.approx(0.21) and result["mm_per_px_y"] == pytest.approx(0.34)
    assert result["region"] == [20, 221, 10, 301]


@pytest.mark.parametrize(
    "region",
    [
        _region((10, 20, 300, 220), (0.02, 0.02), units=4),  # seconds: an M-mode time axis
        _region((10, 20, 300, 220), (0.0, 0.02)),
        _region((10, 20, 300, 220), (-0.02, 0.02)),
        _region((10, 20, 12, 220), (0.02, 0.02)),  # too thin to be an image
    ],
)
def test_no_calibration_without_a_tissue_region_in_cm(region: Dataset) -> None:
    assert calibration([region], 240, 320) is None
    assert calibration([], 240, 320) is None


def test_ingestion_keeps_calibration_plane_timing_and_the_first_frames(tmp_path) -> None:
    frames = np.stack([phantom(seed=i) for i in range(7)])
    ds = make_us_dataset(frames[0])
    ds.NumberOfFrames = 7
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.CineRate = 25
    ds.ViewName = "transventricular"
    ds.SeriesNumber, ds.InstanceNumber = 2, 5
    ds.SequenceOfUltrasoundRegions = Sequence([_region((10, 20, 300, 220), (0.02, 0.02))])
    path = write_dataset(ds, tmp_path / "loop.dcm")
    first = ingest_paths([path], IngestOptions(max_frames_per_cine=4, cine_frames="first")).studies[0].images
    assert [image.frame for image in first] == [0, 1, 2, 3]
    meta = first[0].metadata
    assert meta["calibration"]["mm_per_px_x"] == pytest.approx(0.2)
    assert (meta["plane"], meta["series_number"], meta["instance_number"]) == ("transventricular", 2, 5)
    assert meta["frame_time_ms"] == pytest.approx(40.0)
    assert (meta["n_frames"], meta["frames_stored"]) == (7, 4)
    np.testing.assert_array_equal(first[2].pixels[..., 0], frames[2])
    sampled = ingest_paths([path], IngestOptions(max_frames_per_cine=4)).studies[0].images
    assert [image.frame for image in sampled] == [0, 2, 4, 6]


def test_a_png_has_no_calibration(tmp_path) -> None:
    import cv2

    folder = tmp_path / "patient-1"
    folder.mkdir()
    cv2.imwrite(str(folder / "scan.png"), phantom())
    image = ingest_paths([folder], IngestOptions()).studies[0].images[0]
    assert image.metadata.get("calibration") is None
