"""Pure pieces of ingestion against independent references (pydicom's own LUT code, hand values)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_windowing

from app.ingest.display import sample_frame_indices, stretch_to_uint8, window_to_uint8
from app.ingest.gestational_age import parse_gestational_age, weeks_from_lmp
from app.ingest.identity import patient_key
from app.ingest.regions import tissue_box


@pytest.mark.parametrize(
    ("n_frames", "max_frames", "expected"),
    [
        (1, 8, [0]),
        (5, 8, [0, 1, 2, 3, 4]),
        (120, 8, [0, 17, 34, 51, 68, 85, 102, 119]),
        (10, 2, [0, 9]),
        (10, 1, [5]),
        (0, 8, []),
    ],
)
def test_frame_sampling_is_even_and_includes_both_ends(
    n_frames: int, max_frames: int, expected: list[int]
) -> None:
    assert sample_frame_indices(n_frames, max_frames) == expected


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(128.0, 256.0), (60.0, 40.0), (200.5, 11.0)])
def test_window_matches_pydicom_reference(function: str, center: float, width: float) -> None:
    values = np.arange(256, dtype=np.uint16).reshape(16, 16)
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = 8
    ds.PixelRepresentation = 0
    ds.WindowCenter = center
    ds.WindowWidth = width
    ds.VOILUTFunction = function
    # For 8-bit unsigned input pydicom's output range is 0..255, the same as ours.
    reference = apply_windowing(values.astype(np.float64), ds)
    ours = window_to_uint8(values, center, width, function)
    assert np.abs(ours.astype(float) - reference).max() <= 0.5 + 1e-9


def test_window_hand_values() -> None:
    # Centre 100, width 51 (LINEAR): below 75 → 0, above 124.5 → 255, centre-0.5 → midpoint.
    got = window_to_uint8(np.array([0, 74, 99.5, 125, 4000]), 100, 51)
    assert got.tolist() == [0, 0, 128, 255, 255]


def test_stretch_uses_the_image_range() -> None:
    assert stretch_to_uint8(np.array([[-1000, 0, 1000]])).tolist() == [[0, 128, 255]]
    assert stretch_to_uint8(np.full((2, 2), 7)).max() == 0


@pytest.mark.parametrize(
    ("text", "weeks"),
    [
        ("GA 22w3d", 22 + 3 / 7),
        ("GA: 21w 0d", 21.0),
        ("gestational age 20.5 weeks", 20.5),
        ("GA=19.25", 19.25),
        ("23+4", 23 + 4 / 7),
        ("fetal CNS, 24 weeks", 24.0),
        ("GA 2w1d", None),  # implausibly early
        ("no age here", None),
        (None, None),
    ],
)
def test_gestational_age_text(text: str | None, weeks: float | None) -> None:
    got = parse_gestational_age(text)
    if weeks is None:
        assert got is None
    else:
        assert got == pytest.approx(weeks, abs=0.01)


def test_gestational_age_from_lmp() -> None:
    assert weeks_from_lmp("20240101", "20240603") == pytest.approx(22.0)
    assert weeks_from_lmp("2024-01-01", "garbage") is None


def _region(x0: int, y0: int, x1: int, y1: int, data_type: int = 1) -> Dataset:
    item = Dataset()
    item.RegionDataType = data_type
    item.RegionSpatialFormat = 1
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    return item


def test_tissue_box_takes_the_largest_tissue_region_and_clips() -> None:
    regions = [
        _region(10, 10, 99, 59),
        _region(100, 0, 700, 900),  # larger, runs off the 480×640 image
        _region(0, 0, 639, 479, data_type=3),  # a Doppler region, not tissue
    ]
    assert tissue_box(regions, 480, 640) == (0, 480, 100, 640)


def test_tissue_box_ignores_slivers_and_missing_regions() -> None:
    assert tissue_box([_region(0, 0, 639, 5)], 480, 640) is None
    assert tissue_box([], 480, 640) is None


def test_patient_key_is_stable_salted_and_non_identifying() -> None:
    key = patient_key("PID-12345", "salt")
    assert key == patient_key("PID-12345", "salt")
    assert key != patient_key("PID-12345", "other-salt")
    assert key != patient_key("PID-12346", "salt")
    assert "12345" not in key
    assert key.startswith("pt-") and len(key) == 15
