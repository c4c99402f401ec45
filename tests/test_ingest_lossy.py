"""Lossy inputs are recorded on each image: by transfer syntax, or by LossyImageCompression
(0028,2110) with its ratio and method when an earlier step compressed them."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_support import make_us_dataset, phantom, vendor_file, write_dataset

from app.ingest import IngestOptions, ingest_paths


def _lossy(path: Path) -> str | None:
    result = ingest_paths([path], IngestOptions())
    assert not result.rejected, result.rejected
    (value,) = {image.metadata["lossy_compression"] for study in result.studies for image in study.images}
    return value


def test_a_lossy_jpeg_is_recorded_as_lossy() -> None:
    words = _lossy(vendor_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert words is not None and "JPEG Baseline" in words


@pytest.mark.parametrize("name", ["examples_jpeg2k.dcm", "SC_rgb_rle.dcm", "examples_rgb_color.dcm"])
def test_lossless_files_are_not(name: str) -> None:
    assert _lossy(vendor_file(name)) is None


def test_an_earlier_lossy_step_is_recorded_with_its_ratio_and_method(tmp_path: Path) -> None:
    ds = make_us_dataset(
        phantom(),
        LossyImageCompression="01",
        LossyImageCompressionRatio=["10", "2.5"],
        LossyImageCompressionMethod=["ISO_15444_1", "ISO_10918_1"],
    )
    words = _lossy(write_dataset(ds, tmp_path / "decompressed.dcm"))
    assert words == "lossy compression: ratio 10:1 then 2.5:1, method ISO_15444_1 then ISO_10918_1"
    assert (
        _lossy(write_dataset(make_us_dataset(phantom(), LossyImageCompression="00"), tmp_path / "l.dcm"))
        is None
    )


@pytest.mark.parametrize(
    "name", ["SC_rgb_jpeg_dcmtk.dcm", "examples_jpeg2k.dcm", "SC_rgb_rle.dcm", "JPEGLSNearLossless_08.dcm"]
)
def test_the_decoder_is_pinned_per_transfer_syntax(name: str) -> None:
    """Compressed pixels are always decoded by pylibjpeg, whatever else is installed (Pillow and
    pyjpegls are, here), so a file decodes to the same pixels on every server."""
    import pydicom
    from pydicom.pixels import pixel_array

    from app.ingest.dicom import read_dicom

    path = vendor_file(name)
    _, images = read_dicom(path.read_bytes(), name, "sha", IngestOptions())
    assert images[0].metadata["decoder"] == "pylibjpeg"
    syntax = pydicom.dcmread(path).file_meta.TransferSyntaxUID
    plugins = pydicom.pixels.get_decoder(syntax).available_plugins
    assert "pylibjpeg" in plugins and len(plugins) >= 2  # a choice exists, and pylibjpeg is taken
    pinned = pixel_array(pydicom.dcmread(path), index=0, decoding_plugin="pylibjpeg")
    assert pinned.shape[:2] == images[0].pixels.shape[:2]


def test_uncompressed_pixels_need_no_plugin() -> None:
    from app.ingest.dicom import read_dicom

    path = vendor_file("examples_rgb_color.dcm")
    _, images = read_dicom(path.read_bytes(), "x", "sha", IngestOptions())
    assert images[0].metadata["decoder"] == "native"
