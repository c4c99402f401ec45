"""PNG / JPEG / BMP / TIFF exports → display RGB uint8 (first page of multi-page files)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from app.ingest.budget import check_decode_budget
from app.ingest.display import stretch_to_uint8
from app.ingest.errors import RejectedFile, collected_warnings, reraise_if_fatal
from app.ingest.types import IngestedImage, IngestOptions

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
SUPPORTED_FORMATS = frozenset(name for _, name in _MAGIC)


def sniff_raster(head: bytes) -> str | None:
    """The image format named by a file's first bytes, if it is one we read."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _to_rgb_uint8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit greyscale exports span 0..65535: keep the top 8 bits.
        return _grey(np.right_shift(np.asarray(image, dtype=np.uint16), 8).astype(np.uint8))
    if image.mode in ("I", "F"):
        return _grey(stretch_to_uint8(np.asarray(image)))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _grey(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _open(data: bytes, fmt: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        # Pillow refuses headers above twice its MAX_IMAGE_PIXELS before decoding anything.
        raise RejectedFile(
            f"the {fmt} image is too large to decode: its header declares more than "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels (a possible decompression bomb)"
        ) from exc


def _bytes_per_band(mode: str) -> int:
    if mode.startswith("I;16"):
        return 2
    if mode in ("I", "F") or mode.startswith("I;32"):
        return 4
    return 1


def read_raster(data: bytes, source: str, sha256: str, options: IngestOptions) -> IngestedImage:
    """Decode an image export. Raises RejectedFile with a readable reason."""
    fmt = sniff_raster(data[:16])
    if fmt is None:
        raise RejectedFile("unsupported image format (accepted: DICOM, PNG, JPEG, BMP, TIFF, ZIP)")
    try:
        # Pillow's warnings (its own decompression-bomb check included; the explicit pixel
        # limit below decides) go into the metadata.
        with collected_warnings() as notes:
            image = _open(data, fmt)
            # Image.open read the header only: the size is checked before a pixel is decoded.
            width, height = image.size
            if width * height > options.max_pixels_per_frame:
                raise RejectedFile(
                    f"the image is too large: width × height = {width} × {height} pixels, "
                    f"above the limit of {options.max_pixels_per_frame:,} pixels"
                )
            check_decode_budget(
                [
                    ("width", width),
                    ("height", height),
                    ("bands", len(image.getbands())),
                    ("bytes per band", _bytes_per_band(image.mode)),
                ],
                options.max_decoded_bytes,
            )
            n_frames = int(getattr(image, "n_frames", 1))
            image.load()
            # Phone and camera JPEGs may be stored rotated with an EXIF orientation tag.
            image = ImageOps.exif_transpose(image)
            pixels = _to_rgb_uint8(image)
    except RejectedFile:
        raise
    except BaseException as exc:  # Pillow raises many types on damaged files
        reraise_if_fatal(exc)
        raise RejectedFile(f"the {fmt} file is damaged or truncated and cannot be decoded") from exc
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise RejectedFile(f"the {fmt} file holds an empty image")
    metadata: dict[str, Any] = {
        "format": fmt,
        "mode": image.mode,
        "n_frames": n_frames,
        "rows": int(pixels.shape[0]),
        "columns": int(pixels.shape[1]),
        "scan_box_source": "detected",
    }
    if notes:
        metadata["warnings"] = notes
    return IngestedImage(
        source=source, frame=None, pixels=pixels, scan_box=None, sha256=sha256, metadata=metadata
    )
