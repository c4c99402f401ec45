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
