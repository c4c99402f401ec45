"""The Sequence of Ultrasound Regions (0018,6011) → the crop box of the scan area."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.preprocess import Box

TISSUE = 1  # RegionDataType 0001H: "Tissue"
MIN_REGION_SIDE = 16  # pixels; thinner "regions" are rulers or colour bars, not an image


def _region_box(region: Any, height: int, width: int) -> Box | None:
    try:
        x0 = int(region.RegionLocationMinX0)
        y0 = int(region.RegionLocationMinY0)
        x1 = int(region.RegionLocationMaxX1)
        y1 = int(region.RegionLocationMaxY1)
    except (AttributeError, TypeError, ValueError):
        return None
    # Max coordinates are inclusive in DICOM; Box is bottom/right-exclusive.
    top, bottom = max(0, y0), min(height, y1 + 1)
    left, right = max(0, x0), min(width, x1 + 1)
    if bottom - top < MIN_REGION_SIDE or right - left < MIN_REGION_SIDE:
        return None
    return (top, bottom, left, right)


def tissue_box(regions: Iterable[Any], height: int, width: int) -> Box | None:
    """The largest tissue region, clipped to the image; None when there is none.

    The largest rather than the union: dual-view screens hold two tissue regions side by
    side, and the model was trained on one view per image.
    """
    boxes = []
    for region in regions:
        if int(getattr(region, "RegionDataType", -1) or -1) != TISSUE:
            continue
        box = _region_box(region, height, width)
        if box is not None:
            boxes.append(box)
    if not boxes:
        return None
    return max(boxes, key=lambda b: (b[1] - b[0]) * (b[3] - b[2]))


CM = 3  # PhysicalUnitsX/YDirection 0003H: cm


def _largest_tissue_region(regions: Iterable[Any], height: int, width: int) -> tuple[Any, Box] | None:
    found = []
    for region in regions:
        if int(getattr(region, "RegionDataType", -1) or -1) != TISSUE:
            continue
        box = _region_box(region, height, width)
        if box is not None:
            found.append((region, box))
    if not found:
        return None
    return max(found, key=lambda item: (item[1][1] - item[1][0]) * (item[1][3] - item[1][2]))


def calibration(regions: Iterable[Any], height: int, width: int) -> dict[str, Any] | None:
    """Millimetres per pixel of the tissue region ``tissue_box`` picks; None without a physical scale.

    Only regions measured in centimetres (PhysicalUnitsX/YDirection 3) with positive
    PhysicalDeltaX/Y count: other units (seconds, hertz) belong to Doppler and M-mode strips,
    where a caliper's length is not a distance.
    """
    found = _largest_tissue_region(regions, height, width)
    if found is None:
        return None
    region, box = found
    try:
        units = (int(region.PhysicalUnitsXDirection), int(region.PhysicalUnitsYDirection))
        delta_x, delta_y = float(region.PhysicalDeltaX), float(region.PhysicalDeltaY)
    except (AttributeError, TypeError, ValueError):
        return None
    if units != (CM, CM) or not (0 < delta_x < 10 and 0 < delta_y < 10):
        return None
    return {
        "mm_per_px_x": delta_x * 10.0,
        "mm_per_px_y": delta_y * 10.0,
        "region": list(box),
        "source": "SequenceOfUltrasoundRegions PhysicalDeltaX/Y (cm)",
    }
