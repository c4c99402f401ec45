"""Decode budgets: hostile headers are refused before any pixel is decoded, with the values named."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from app.ingest import IngestOptions, ingest_paths
from tests.ingest_support import make_us_dataset, phantom, write_dataset


def only_reason(rejected: list) -> str:
    assert len(rejected) == 1, rejected
    return rejected[0].reason


def hostile_cine(path: Path, frames: int = 8, side: int = 6000) -> Path:
    """A few hundred bytes that claim ``frames`` JPEG frames of side × side.

    The frames are junk: had any been handed to the decoder, the reason would say the data is
    corrupt, so a budget reason proves the header alone decided.
    """
    ds = make_us_dataset(phantom(8, 8))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows = ds.Columns = side
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate([b"\xff\xd8 not a jpeg \xff\xd9"] * frames)
    ds["PixelData"].VR = "OB"
    return write_dataset(ds, path)


def png_header_only(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG whose IHDR declares width × height (8-bit; 0 grey, 2 RGB) and whose data is one byte."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def test_hostile_dicom_header_is_refused_naming_the_tags(tmp_path: Path) -> None:
    path = hostile_cine(tmp_path / "hostile.dcm")
    assert path.stat().st_size < 10_000
    result = ingest_paths([path])
    assert result.studies == []
    reason = only_reason(result.rejected)
    assert "NumberOfFrames × Rows × Columns × SamplesPerPixel × bytes per sample" in reason
    assert "8 × 6000 × 6000 × 1 × 1" in reason
    assert "274.7 MiB, above the decode budget of 256.0 MiB" in reason


def test_the_budget_is_configurable(tmp_path: Path) -> None:
    path = hostile_cine(tmp_path / "small.dcm", frames=2, side=300)
    # 2 × 300 × 300 = 180,000 bytes: over a 100,000-byte budget, so refused before the junk is decoded.
    reason = only_reason(ingest_paths([path], IngestOptions(max_decoded_bytes=100_000)).rejected)
    assert "2 × 300 × 300 × 1 × 1" in reason and "decode budget of 0.1 MiB" in reason
    # Within the default budget the junk frames reach the decoder, which refuses them.
    assert "corrupt" in only_reason(ingest_paths([path]).rejected)


def test_only_the_sampled_frames_of_a_long_cine_count(tmp_path: Path) -> None:
    path = hostile_cine(tmp_path / "long.dcm", frames=1000, side=100)
    reason = only_reason(ingest_paths([path], IngestOptions(max_decoded_bytes=50_000)).rejected)
    assert "frames decoded × Rows × Columns" in reason and "8 × 100 × 100" in reason
    assert "(8 of the file's 1000 frames are decoded)" in reason


def test_bytes_per_sample_and_samples_per_pixel_count(tmp_path: Path) -> None:
    rgb = np.dstack([phantom(60, 80)] * 3)
    path = write_dataset(make_us_dataset(rgb), tmp_path / "rgb.dcm")
    reason = only_reason(ingest_paths([path], IngestOptions(max_decoded_bytes=10_000)).rejected)
    assert "1 × 60 × 80 × 3 × 1 = 0.0 MiB" in reason
    # The same file fits a budget of exactly its size.
    assert ingest_paths([path], IngestOptions(max_decoded_bytes=60 * 80 * 3)).n_images == 1


def test_raster_budget_is_checked_from_the_header(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(phantom(60, 80)).save(buffer, format="PNG")
    path = tmp_path / "grey.png"
    path.write_bytes(buffer.getvalue())
    reason = only_reason(ingest_paths([path], IngestOptions(max_decoded_bytes=1000)).rejected)
    assert "width × height × bands × bytes per band = 80 × 60 × 1 × 1" in reason
    # An RGB header claiming 10000 × 10000 with no data behind it: refused on the header, not "damaged".
    claim = tmp_path / "claim.png"
    claim.write_bytes(png_header_only(10000, 10000, colour_type=2))
    reason = only_reason(ingest_paths([claim], IngestOptions(max_pixels_per_frame=10**9)).rejected)
    assert "10000 × 10000 × 3 × 1 = 286.1 MiB, above the decode budget of 256.0 MiB" in reason


def test_png_decompression_bomb_header_gets_a_clear_reason(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(60000, 60000))
    reason = only_reason(ingest_paths([path]).rejected)
    assert "too large to decode" in reason and "decompression bomb" in reason


@pytest.mark.parametrize("side", [7000, 65535])
def test_oversized_frames_name_rows_and_columns(tmp_path: Path, side: int) -> None:
    path = hostile_cine(tmp_path / "wide.dcm", frames=1, side=side)
    reason = only_reason(ingest_paths([path]).rejected)
    assert f"Columns × Rows = {side} × {side} pixels per frame" in reason
