"""Ingestion of real vendor DICOM files (pydicom and pydicom-data test files).

Compressed variants must decode to their uncompressed siblings (exactly when lossless);
colour and palette handling are checked against dcmtk, an independent DICOM toolkit.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array

from app.ingest import IngestedImage, IngestOptions, ingest_paths
from app.ingest.identity import file_sha256
from tests.ingest_support import vendor_file

needs_dcmtk = pytest.mark.skipif(shutil.which("dcmdjpeg") is None, reason="dcmtk is not installed")


def ingest_one(path: Path, max_frames: int = 8) -> list[IngestedImage]:
    result = ingest_paths([path], IngestOptions(max_frames_per_cine=max_frames))
    assert not result.rejected, result.rejected
    assert len(result.studies) == 1
    images = result.studies[0].images
    for image in images:
        assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 3 and image.pixels.shape[2] == 3
    return images


def pixels_of(name: str, max_frames: int = 8) -> np.ndarray:
    return np.stack([image.pixels for image in ingest_one(vendor_file(name), max_frames)])


LOSSLESS_SIBLINGS = [
    # (reference, variant): transfer syntax / photometric interpretation covered
    ("US1_UNCR.dcm", "US1_J2KR.dcm"),  # RGB vs JPEG 2000 lossless (YBR_RCT)
    ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm"),  # PALETTE COLOR, RLE
    ("OBXXXX1A.dcm", "OBXXXX1A_expb.dcm"),  # PALETTE COLOR, explicit big endian
    ("OBXXXX1A_2frame.dcm", "OBXXXX1A_rle_2frame.dcm"),  # multi-frame RLE
    ("gdcm-US-ALOKA-16.dcm", "gdcm-US-ALOKA-16_big.dcm"),  # 16-bit palette, implicit LE vs big endian
    ("emri_small.dcm", "emri_small_RLE.dcm"),  # 16-bit MONOCHROME2 cine
    ("emri_small.dcm", "emri_small_big_endian.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"),  # JPEG-LS lossless
    ("MR_small.dcm", "MR_small_implicit.dcm"),  # implicit VR little endian
    ("MR_small.dcm", "MR_small_bigendian.dcm"),
    ("MR_small.dcm", "MR_small_RLE.dcm"),
    ("MR_small.dcm", "MR_small_jp2klossless.dcm"),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),
    ("SC_rgb.dcm", "SC_rgb_rle.dcm"),
    ("SC_rgb.dcm", "SC_rgb_expb.dcm"),
    ("SC_rgb.dcm", "SC_rgb_16bit.dcm"),
    ("SC_rgb.dcm", "SC_rgb_32bit.dcm"),
    ("SC_rgb.dcm", "SC_rgb_jpeg_gdcm.dcm"),  # JPEG lossless process 14
    ("SC_rgb.dcm", "SC_rgb_gdcm_KY.dcm"),  # JPEG 2000, RGB
    ("SC_rgb_2frame.dcm", "SC_rgb_rle_2frame.dcm"),
    ("SC_rgb_2frame.dcm", "SC_rgb_expb_32bit_2frame.dcm"),
    ("RG1_UNCR.dcm", "RG1_J2KR.dcm"),  # MONOCHROME1, JPEG 2000 lossless
]


@pytest.mark.parametrize(("reference", "variant"), LOSSLESS_SIBLINGS)
def test_lossless_variants_decode_identically(reference: str, variant: str) -> None:
    np.testing.assert_array_equal(pixels_of(variant), pixels_of(reference))


@pytest.mark.parametrize(
    ("reference", "variant", "tolerance"),
    [
        ("US1_UNCR.dcm", "US1_J2KI.dcm", 12.0),  # JPEG 2000 lossy (YBR_ICT)
        ("RG1_UNCR.dcm", "RG1_J2KI.dcm", 2.0),
        ("SC_rgb.dcm", "SC_rgb_jpeg_lossy_gdcm.dcm", 6.0),  # JPEG baseline, YBR_FULL
        ("SC_rgb.dcm", "SC_rgb_jls_lossy_line.dcm", 6.0),  # JPEG-LS near-lossless
    ],
)
def test_lossy_variants_stay_close(reference: str, variant: str, tolerance: float) -> None:
    difference = np.abs(pixels_of(variant).astype(float) - pixels_of(reference))
    assert difference.mean() < tolerance


# SC_rgb.dcm: ten horizontal bands of known colour, 10 rows each.
SC_RGB_BANDS = [
    (255, 0, 0),
    (255, 128, 128),
    (0, 255, 0),
    (128, 255, 128),
    (0, 0, 255),
    (128, 128, 255),
    (0, 0, 0),
    (64, 64, 64),
    (192, 192, 192),
    (255, 255, 255),
]


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("SC_rgb.dcm", 0),
        # 8-bit YCbCr cannot hold pure green exactly: up to 5 levels off after the round trip.
        ("SC_ybr_full_uncompressed.dcm", 6),
        ("SC_ybr_full_422_uncompressed.dcm", 6),  # YBR_FULL_422: subsampled chroma
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", 5),  # JPEG baseline labelled YBR_FULL_422
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", 5),  # JPEG baseline labelled YBR_FULL
        ("SC_rgb_dcmtk_+eb+cr.dcm", 3),  # JPEG baseline labelled RGB
        ("SC_rgb_jpeg_dcmtk.dcm", 8),
    ],
)
def test_colour_band_values_match_the_known_colours(name: str, tolerance: int) -> None:
    pixels = pixels_of(name)[0].astype(int)
    for band, colour in enumerate(SC_RGB_BANDS):
        centre = pixels[band * 10 + 5, 50]
        assert np.abs(centre - np.array(colour)).max() <= tolerance, (band, centre, colour)


@needs_dcmtk
@pytest.mark.parametrize(
    ("compressed", "dcmtk_decoded"),
    [
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_ebcynp_dcmd.dcm"),
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_ebcyn1_dcmd.dcm"),
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_dcmtk_ebcys2_dcmd.dcm"),
        ("SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_ebcr_dcmd.dcm"),
    ],
)
def test_jpeg_colour_matches_dcmtk_decoding(compressed: str, dcmtk_decoded: str) -> None:
    # The *_dcmd files were decompressed by dcmtk: an independent JPEG + colour pipeline.
    difference = np.abs(pixels_of(compressed).astype(int) - pixels_of(dcmtk_decoded))
    assert difference.max() <= 2


@needs_dcmtk
def test_ybr_full_422_jpeg_cine_matches_dcmtk(tmp_path: Path) -> None:
    source = vendor_file("color3d_jpeg_baseline.dcm")
    decoded = tmp_path / "decoded.dcm"
    subprocess.run(["dcmdjpeg", str(source), str(decoded)], check=True, capture_output=True)
    ours = ingest_one(source, max_frames=3)
    assert [image.frame for image in ours] == [0, 60, 119]
    reference = pydicom.dcmread(decoded)
    assert reference.PhotometricInterpretation == "RGB"
    for image in ours:
        expected = pixel_array(reference, index=image.frame)
        difference = np.abs(image.pixels.astype(int) - expected)
        # JPEG decoders may upsample 4:2:2 chroma differently (a few levels at edges); a
        # missing or doubled YCbCr→RGB conversion would be off by tens of levels everywhere.
        assert difference.mean() < 0.5
        assert difference.max() <= 8


def test_ybr_full_follows_the_dicom_formula() -> None:
    path = vendor_file("SC_ybr_full_uncompressed.dcm")
    ycbcr = pixel_array(pydicom.dcmread(path), raw=True).astype(float)
    y, cb, cr = ycbcr[..., 0], ycbcr[..., 1] - 128, ycbcr[..., 2] - 128
    # PS3.3 C.7.6.3.1.2, YBR_FULL inverted (ITU-R BT.601 full range).
    expected = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    expected = np.clip(np.round(expected), 0, 255)
    assert np.abs(ingest_one(path)[0].pixels - expected).max() <= 1


@needs_dcmtk
@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", 0),  # ultrasound, JPEG lossless
        ("JPEG-LL.dcm", 0),  # 16-bit JPEG lossless
        ("JPGExtended.dcm", 1),  # 12-bit JPEG extended: lossy, decoders round differently
    ],
)
def test_jpeg_lossless_and_extended_match_dcmtk(tmp_path: Path, name: str, tolerance: int) -> None:
    source = vendor_file(name)
    decoded = tmp_path / "decoded.dcm"
    subprocess.run(["dcmdjpeg", str(source), str(decoded)], check=True, capture_output=True)
    difference = np.abs(ingest_one(source)[0].pixels.astype(int) - ingest_one(decoded)[0].pixels)
    assert difference.max() <= tolerance


@needs_dcmtk
@pytest.mark.parametrize("name", ["OBXXXX1A.dcm", "OT-PAL-8-face.dcm", "examples_palette.dcm"])
def test_palette_colour_matches_dcmtk_rendering(tmp_path: Path, name: str) -> None:
    rendered = tmp_path / "rendered.png"
    subprocess.run(
        ["dcm2pnm", "--write-png", str(vendor_file(name)), str(rendered)], check=True, capture_output=True
    )
    expected = cv2.cvtColor(cv2.imread(str(rendered), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    ours = ingest_one(vendor_file(name))[0].pixels
    assert np.abs(ours.astype(int) - expected).max() <= 1


def expand_segmented_lut(words: np.ndarray) -> np.ndarray:
    """PS3.3 C.7.9.2: discrete (opcode 0) and linear (opcode 1) segments, written out by hand."""
    values: list[float] = []
    i = 0
    while i < len(words):
        opcode, length = int(words[i]), int(words[i + 1])
        if opcode == 0:
            values.extend(float(v) for v in words[i + 2 : i + 2 + length])
            i += 2 + length
        elif opcode == 1:
            start, end = values[-1], float(words[i + 2])
            values.extend(start + (end - start) * (k + 1) / length for k in range(length))
            i += 3
        else:
            raise AssertionError("indirect segments are not used by this file")
    return np.asarray(values)


def test_sixteen_bit_segmented_palette_matches_a_hand_expanded_lut() -> None:
    path = vendor_file("gdcm-US-ALOKA-16.dcm")  # dcmtk cannot render this one
    ds = pydicom.dcmread(path)
    indices = pixel_array(ds).astype(np.int64) - int(ds.RedPaletteColorLookupTableDescriptor[1])
    expected = []
    for colour in ("Red", "Green", "Blue"):
        words = np.frombuffer(ds[f"Segmented{colour}PaletteColorLookupTableData"].value, "<u2")
        lut = expand_segmented_lut(words)
        expected.append(np.round(lut[np.clip(indices, 0, len(lut) - 1)]).astype(np.int64) >> 8)
    ours = ingest_one(path)[0].pixels.astype(np.int64)
    assert np.abs(ours - np.stack(expected, axis=-1)).max() <= 1
    assert len(np.unique(ours.reshape(-1, 3), axis=0)) > 10


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    path = vendor_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME2"
    as_mono2 = tmp_path / "mono2.dcm"
    ds.save_as(as_mono2)
    np.testing.assert_array_equal(ingest_one(path)[0].pixels, 255 - ingest_one(as_mono2)[0].pixels)


def test_window_from_the_file_is_applied() -> None:
    path = vendor_file("693_UNCR.dcm")  # CT: rescale intercept -1024, window 40/100
    ds = pydicom.dcmread(path)
    hounsfield = pixel_array(ds).astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lo = float(ds.WindowCenter) - 0.5 - (float(ds.WindowWidth) - 1) / 2
    hi = float(ds.WindowCenter) - 0.5 + (float(ds.WindowWidth) - 1) / 2
    grey = ingest_one(path)[0].pixels[:, :, 0]
    assert (grey[hounsfield <= lo] == 0).all()
    assert (grey[hounsfield > hi] == 255).all()


def test_voi_lut_sequence_is_applied() -> None:
    path = vendor_file("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    assert "VOILUTSequence" in ds
    lut = np.asarray(ds.VOILUTSequence[0].LUTData, float)
    first = int(ds.VOILUTSequence[0].LUTDescriptor[1])
    raw = pixel_array(ds).astype(int)
    expected = np.round(lut[np.clip(raw - first, 0, len(lut) - 1)] / lut.max() * 255)
    assert np.abs(ingest_one(path)[0].pixels[:, :, 0] - expected).max() <= 1


def test_cine_frames_are_sampled_evenly_and_decoded_individually() -> None:
    path = vendor_file("emri_small.dcm")
    images = ingest_one(path, max_frames=4)
    assert [image.frame for image in images] == [0, 3, 6, 9]
    everything = ingest_one(path, max_frames=10)
    for image in images:
        np.testing.assert_array_equal(image.pixels, everything[image.frame].pixels)
    assert len({image.pixels.tobytes() for image in everything}) == 10


def test_single_frame_files_have_no_frame_index() -> None:
    assert ingest_one(vendor_file("US1_UNCR.dcm"))[0].frame is None


def test_ultrasound_regions_give_the_crop_box_and_pixels_stay_whole() -> None:
    image = ingest_one(vendor_file("OBXXXX1A.dcm"))[0]
    # Tissue region (120, 60)-(800, 518) inclusive, clipped to the 800-pixel-wide image.
    assert image.scan_box == (60, 519, 120, 800)
    assert image.pixels.shape == (600, 800, 3)
    assert image.metadata["scan_box_source"] == "ultrasound_regions"


def test_files_without_regions_leave_the_box_to_detection() -> None:
    image = ingest_one(vendor_file("US1_UNCR.dcm"))[0]
    assert image.scan_box is None
    assert image.metadata["scan_box_source"] == "detected"


def test_deflated_transfer_syntax_is_read() -> None:
    image = ingest_one(vendor_file("image_dfl.dcm"))[0]
    assert image.pixels.shape == (512, 512, 3)
    assert image.metadata["transfer_syntax"] == "Deflated Explicit VR Little Endian"


def test_file_without_preamble_is_still_read() -> None:
    assert ingest_one(vendor_file("OT-PAL-8-face.dcm"))[0].pixels.shape == (480, 640, 3)


def test_metadata_names_transfer_syntax_and_photometric_interpretation() -> None:
    image = ingest_one(vendor_file("US1_J2KR.dcm"))[0]
    assert image.metadata["transfer_syntax"] == "JPEG 2000 Image Compression (Lossless Only)"
    assert image.metadata["photometric_interpretation"] == "YBR_RCT"
    assert image.metadata["modality"] == "US"
    assert image.sha256 == file_sha256(vendor_file("US1_J2KR.dcm").read_bytes())


@pytest.mark.parametrize(
    ("name", "reason_part"),
    [
        ("test-SR.dcm", "structured report"),
        ("reportsi.dcm", "structured report"),
        ("liver.dcm", "segmentation"),
        ("waveform_ecg.dcm", "waveform"),
        ("rtdose.dcm", "radiotherapy"),
        ("MR_truncated.dcm", "corrupt or truncated"),
        ("emri_small_jpeg_2k_lossless_too_short.dcm", "no image"),
    ],
)
def test_unusable_vendor_files_are_rejected_with_a_reason(name: str, reason_part: str) -> None:
    result = ingest_paths([vendor_file(name)])
    assert result.studies == []
    assert len(result.rejected) == 1
    assert reason_part in result.rejected[0].reason


def test_every_bundled_file_is_read_or_rejected_without_an_exception() -> None:
    folders = {vendor_file("US1_UNCR.dcm").parent, vendor_file("MR_small.dcm").parent}
    files = sorted(p for folder in folders for p in folder.glob("*.dcm"))
    assert len(files) > 100
    options = IngestOptions(max_frames_per_cine=1)
    for path in files:
        result = ingest_paths([path], options)
        used = sum(len(study.images) for study in result.studies)
        assert (used > 0) != bool(result.rejected), path.name
        for rejection in result.rejected:
            assert rejection.reason and "Traceback" not in rejection.reason


@needs_dcmtk
@pytest.mark.parametrize(
    "name",
    [
        "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless, 8-bit grey
        "JPEGLSNearLossless_16.dcm",  # 16-bit grey
        "SC_rgb_jls_lossy_sample.dcm",  # colour, sample-interleaved
        "SC_rgb_jls_lossy_line.dcm",  # colour, line-interleaved
    ],
)
def test_jpeg_ls_matches_dcmtk(tmp_path: Path, name: str) -> None:
    # JPEG-LS decoding is exact, so even the near-lossless files must agree with dcmtk's decoder.
    decoded = tmp_path / "decoded.dcm"
    subprocess.run(["dcmdjpls", str(vendor_file(name)), str(decoded)], check=True, capture_output=True)
    np.testing.assert_array_equal(ingest_one(vendor_file(name))[0].pixels, ingest_one(decoded)[0].pixels)
