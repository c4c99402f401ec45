"""Ingestion of hand-made inputs: image exports, grouping, malformed files and hostile ZIPs."""

from __future__ import annotations

import io
import logging
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image

from app.ingest import IngestOptions, ingest_paths
from tests.ingest_support import dicom_bytes, make_us_dataset, phantom, vendor_file, write_dataset, write_zip


def only_reason(result_rejected: list) -> str:
    assert len(result_rejected) == 1, result_rejected
    return result_rejected[0].reason


# --- image exports ---------------------------------------------------------------------


def encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "suffix", "lossless"),
    [("PNG", ".png", True), ("BMP", ".bmp", True), ("TIFF", ".tif", True), ("JPEG", ".jpg", False)],
)
def test_image_exports_are_read_as_rgb(tmp_path: Path, fmt: str, suffix: str, lossless: bool) -> None:
    grey = phantom(seed=1).astype(float)
    # Tinted, so channels differ, but with smooth chroma that JPEG subsampling keeps.
    rgb = np.dstack([grey, grey * 0.8, grey * 0.6]).astype(np.uint8)
    path = tmp_path / "P7" / f"img{suffix}"
    path.parent.mkdir()
    path.write_bytes(encode(rgb, fmt))
    result = ingest_paths([path])
    assert not result.rejected
    image = result.studies[0].images[0]
    assert image.pixels.shape == rgb.shape and image.pixels.dtype == np.uint8
    if lossless:
        np.testing.assert_array_equal(image.pixels, rgb)
    else:
        assert np.abs(image.pixels.astype(int) - rgb).mean() < 8
    assert image.scan_box is None and image.metadata["format"] == fmt


def test_sixteen_bit_grey_png_keeps_the_high_byte(tmp_path: Path) -> None:
    grey16 = (phantom().astype(np.uint16) * 257 + 100).astype(np.uint16)
    path = tmp_path / "grey16.png"
    assert cv2.imwrite(str(path), grey16)
    pixels = ingest_paths([path]).studies[0].images[0].pixels
    np.testing.assert_array_equal(pixels[:, :, 0], (grey16 >> 8).astype(np.uint8))
    assert (pixels[:, :, 0] == pixels[:, :, 2]).all()


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    tall = np.zeros((120, 60, 3), np.uint8)
    tall[:20] = 255  # bright top rows
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(tall, 1)))
    path = tmp_path / "photo.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    pixels = ingest_paths([path]).studies[0].images[0].pixels
    assert pixels.shape[:2] == (120, 60)
    assert pixels[:20].mean() > 200 and pixels[40:].mean() < 30


# --- grouping --------------------------------------------------------------------------


def test_plain_images_are_grouped_by_folder(tmp_path: Path) -> None:
    for patient in ("A01", "B02"):
        for index in range(2):
            (tmp_path / patient).mkdir(exist_ok=True)
            cv2.imwrite(
                str(tmp_path / patient / f"{index}.png"), phantom(seed=index + len(patient) * ord(patient[0]))
            )
    result = ingest_paths([tmp_path])
    assert [len(study.images) for study in result.studies] == [2, 2]
    assert [study.patient_id for study in result.studies] == ["A01", "B02"]
    assert len({study.patient_key for study in result.studies}) == 2


def test_dicom_is_grouped_by_patient_and_study(tmp_path: Path) -> None:
    study_a, study_b = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    files = [
        make_us_dataset(phantom(seed=1), patient_id="P1", study_uid=study_a),
        make_us_dataset(phantom(seed=2), patient_id="P1", study_uid=study_a),
        make_us_dataset(phantom(seed=3), patient_id="P1", study_uid=study_b),
        make_us_dataset(phantom(seed=4), patient_id="P2", study_uid=pydicom.uid.generate_uid()),
    ]
    for index, ds in enumerate(files):
        write_dataset(ds, tmp_path / "mixed" / f"{index}.dcm")
    result = ingest_paths([tmp_path / "mixed"])
    assert sorted(len(study.images) for study in result.studies) == [1, 1, 2]
    keys = {study.study_uid: study.patient_key for study in result.studies}
    assert keys[study_a] == keys[study_b]  # same patient, two studies
    assert len(set(keys.values())) == 2
    assert all("P1" not in key and "P2" not in key for key in keys.values())


def test_same_file_twice_is_used_once(tmp_path: Path) -> None:
    path = write_dataset(make_us_dataset(phantom()), tmp_path / "a.dcm")
    result = ingest_paths([path, path])
    assert result.n_images == 1
    assert "given twice" in only_reason(result.rejected)


@pytest.mark.parametrize(
    ("attributes", "weeks"),
    [
        ({"ImageComments": "GA 22w3d"}, 22 + 3 / 7),
        ({"PatientComments": "gestational age: 20.5 weeks"}, 20.5),
        ({"LastMenstrualDate": "20240101", "StudyDate": "20240603"}, 22.0),
        ({"PatientAge": "024W"}, 24.0),
        ({}, None),
    ],
)
def test_gestational_age_is_read_from_dicom(tmp_path: Path, attributes: dict, weeks: float | None) -> None:
    path = write_dataset(make_us_dataset(phantom(), **attributes), tmp_path / "ga.dcm")
    got = ingest_paths([path]).studies[0].gestational_age_weeks
    assert got == (pytest.approx(weeks, abs=0.01) if weeks is not None else None)


def test_identifying_fields_are_kept_but_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = make_us_dataset(phantom(), patient_id="SECRET-ID-998877", patient_name="Smith^Alice")
    path = write_dataset(ds, tmp_path / "x.dcm")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(dicom_bytes(ds)[:400])
    with caplog.at_level(logging.DEBUG):
        result = ingest_paths([path, bad])
    study = result.studies[0]
    assert study.patient_id == "SECRET-ID-998877" and study.patient_name == "Smith^Alice"
    assert "SECRET-ID-998877" not in caplog.text and "Smith" not in caplog.text
    assert all("SECRET" not in r.reason and "Smith" not in r.reason for r in result.rejected)


def test_grey_dicom_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = phantom()
    path = write_dataset(make_us_dataset(grey), tmp_path / "g.dcm")
    pixels = ingest_paths([path]).studies[0].images[0].pixels
    for channel in range(3):
        np.testing.assert_array_equal(pixels[:, :, channel], grey)


@pytest.mark.skipif(shutil.which("img2dcm") is None, reason="dcmtk is not installed")
def test_dicom_made_by_dcmtk_from_a_jpeg(tmp_path: Path) -> None:
    rgb = np.dstack([phantom(seed=5)] * 3)
    jpeg = tmp_path / "scan.jpg"
    Image.fromarray(rgb).save(jpeg, quality=95)
    dcm = tmp_path / "scan.dcm"
    subprocess.run(["img2dcm", "-k", "Modality=US", str(jpeg), str(dcm)], check=True, capture_output=True)
    from_dicom = ingest_paths([dcm]).studies[0].images[0].pixels.astype(int)
    from_jpeg = ingest_paths([jpeg]).studies[0].images[0].pixels.astype(int)
    # Same JPEG bitstream, decoded by two paths (DICOM encapsulation vs file export).
    assert np.abs(from_dicom - from_jpeg).max() <= 2


# --- malformed files -------------------------------------------------------------------


def test_missing_path_is_rejected(tmp_path: Path) -> None:
    assert "not found" in only_reason(ingest_paths([tmp_path / "nope.dcm"]).rejected)


def test_truncated_dicom_is_rejected(tmp_path: Path) -> None:
    data = dicom_bytes(make_us_dataset(phantom()))
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: len(data) // 2])
    reason = only_reason(ingest_paths([path]).rejected)
    assert "corrupt" in reason or "damaged" in reason


def test_wrong_preamble_is_not_dicom(tmp_path: Path) -> None:
    data = bytearray(dicom_bytes(make_us_dataset(phantom())))
    data[128:132] = b"DICX"
    path = tmp_path / "wrong.dcm"
    path.write_bytes(bytes(data))
    assert "not a DICOM file" in only_reason(ingest_paths([path]).rejected)


def test_structured_report_is_rejected_as_such() -> None:
    assert "structured report" in only_reason(ingest_paths([vendor_file("test-SR.dcm")]).rejected)


def test_zero_length_pixel_data_is_rejected(tmp_path: Path) -> None:
    ds = make_us_dataset(phantom())
    ds.PixelData = b""
    path = write_dataset(ds, tmp_path / "empty.dcm")
    assert "empty" in only_reason(ingest_paths([path]).rejected)


def test_short_pixel_data_is_corrupt(tmp_path: Path) -> None:
    ds = make_us_dataset(phantom())
    ds.PixelData = ds.PixelData[:1000]
    path = write_dataset(ds, tmp_path / "short.dcm")
    assert "corrupt" in only_reason(ingest_paths([path]).rejected)


def test_corrupt_compressed_frame_is_rejected(tmp_path: Path) -> None:
    ds = pydicom.dcmread(vendor_file("US1_J2KR.dcm"))
    fragments = bytearray(ds.PixelData)
    fragments[len(fragments) // 2 :] = bytes(len(fragments) - len(fragments) // 2)
    ds.PixelData = bytes(fragments)
    path = tmp_path / "broken_j2k.dcm"
    ds.save_as(path)
    reason = only_reason(ingest_paths([path]).rejected)
    assert "corrupt" in reason or "damaged" in reason


def test_text_and_unknown_formats_are_rejected(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("patient notes, not an image\n" * 20)
    gif = tmp_path / "anim.gif"
    Image.fromarray(phantom()).save(gif, format="GIF")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    broken_png = tmp_path / "broken.png"
    broken_png.write_bytes(encode(phantom(), "PNG")[:100])
    result = ingest_paths([text, gif, empty, broken_png])
    reasons = {Path(r.source).name: r.reason for r in result.rejected}
    assert "not a DICOM file or a supported image" in reasons["notes.txt"]
    assert "not a DICOM file or a supported image" in reasons["anim.gif"]
    assert "empty" in reasons["empty.png"]
    assert "damaged or truncated" in reasons["broken.png"]


def test_too_large_files_and_frames_are_rejected(tmp_path: Path) -> None:
    path = write_dataset(make_us_dataset(phantom()), tmp_path / "big.dcm")
    assert "too large" in only_reason(ingest_paths([path], IngestOptions(max_file_bytes=1000)).rejected)
    assert "too large" in only_reason(ingest_paths([path], IngestOptions(max_pixels_per_frame=1000)).rejected)
    png = tmp_path / "big.png"
    cv2.imwrite(str(png), phantom())
    assert "too large" in only_reason(ingest_paths([png], IngestOptions(max_pixels_per_frame=1000)).rejected)


# --- ZIP archives ----------------------------------------------------------------------


def test_zip_of_a_study_folder_is_read_and_cleaned_up(tmp_path: Path) -> None:
    study_uid = pydicom.uid.generate_uid()
    members = {
        "study/P9/a.dcm": dicom_bytes(make_us_dataset(phantom(seed=1), patient_id="P9", study_uid=study_uid)),
        "study/P9/b.dcm": dicom_bytes(make_us_dataset(phantom(seed=2), patient_id="P9", study_uid=study_uid)),
        "study/Q1/c.png": encode(phantom(seed=3), "PNG"),
        "__MACOSX/study/._a.dcm": b"junk",
        "study/readme.txt": b"not an image",
    }
    archive = write_zip(tmp_path / "upload.zip", members)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = ingest_paths([archive], IngestOptions(temp_root=str(scratch)))
    assert sorted(len(study.images) for study in result.studies) == [1, 2]
    assert sum(1 for s in result.studies for i in s.images if i.metadata["format"] == "PNG") == 1
    png_study = next(s for s in result.studies if s.images[0].metadata["format"] == "PNG")
    assert png_study.patient_id == "Q1"
    assert png_study.images[0].source == f"{archive}!study/Q1/c.png"
    assert [r.source for r in result.rejected] == [f"{archive}!study/readme.txt"]
    assert list(scratch.iterdir()) == []


def test_an_archive_with_nothing_in_it_is_rejected_with_a_reason(tmp_path: Path) -> None:
    for name, members in {
        "empty.zip": {},
        "folders.zip": {"study/": b"", "study/P1/": b""},
        "junk.zip": {"__MACOSX/study/._a.dcm": b"junk", "study/.DS_Store": b"junk"},
    }.items():
        archive = write_zip(tmp_path / name, members)
        result = ingest_paths([archive])
        assert not result.studies
        assert "the ZIP archive is empty" in only_reason(result.rejected)


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "bomb.zip", {"zeros.dcm": bytes(50 * 1024 * 1024)})
    assert "ZIP bomb" in only_reason(ingest_paths([archive]).rejected)


def test_zip_larger_than_the_unpacked_size_limit_is_refused(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "big.zip", {"a.bin": os.urandom(3 * 1024 * 1024)})
    options = IngestOptions(max_archive_uncompressed_bytes=2 * 1024 * 1024)
    assert "too large" in only_reason(ingest_paths([archive], options).rejected)


def test_zip_with_too_many_entries_is_refused(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "many.zip", {f"{i}.txt": b"x" for i in range(30)})
    reason = only_reason(ingest_paths([archive], IngestOptions(max_archive_entries=20)).rejected)
    assert "too many entries" in reason


def test_path_traversal_entries_are_skipped(tmp_path: Path) -> None:
    target = tmp_path / "inside"
    target.mkdir()
    png = encode(phantom(), "PNG")
    archive = write_zip(
        tmp_path / "evil.zip", {"../../escaped.png": png, "/abs.png": png, "ok/fine.png": png}
    )
    result = ingest_paths([archive], IngestOptions(temp_root=str(target)))
    assert result.n_images == 1
    assert len(result.rejected) == 2
    assert all("unsafe file name" in r.reason for r in result.rejected)
    assert not (tmp_path / "escaped.png").exists() and not Path("/abs.png").exists()


def test_symlink_in_zip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("study/link.dcm")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("study/real.png", encode(phantom(), "PNG"))
    result = ingest_paths([archive])
    assert result.n_images == 1
    assert "symbolic links" in only_reason(result.rejected)


def test_nested_zip_is_refused(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("a.png", encode(phantom(), "PNG"))
    archive = write_zip(tmp_path / "outer.zip", {"inner.zip": inner.getvalue()})
    assert "ZIP archive inside a ZIP" in only_reason(ingest_paths([archive]).rejected)


def test_damaged_zip_is_rejected(tmp_path: Path) -> None:
    good = write_zip(tmp_path / "good.zip", {"a.png": encode(phantom(), "PNG")}).read_bytes()
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(good[:60])
    assert "damaged" in only_reason(ingest_paths([damaged]).rejected)


def test_symlinked_folders_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    cv2.imwrite(str(outside / "secret.png"), phantom())
    study = tmp_path / "study"
    study.mkdir()
    cv2.imwrite(str(study / "a.png"), phantom(seed=9))
    (study / "link").symlink_to(outside, target_is_directory=True)
    assert ingest_paths([study]).n_images == 1


# --- synthetic studies (app.synth) -----------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, n_patients=2, seed=5, fmt="both", images_per_patient=(3, 3))
    return out


def test_synthetic_dicom_study_matches_its_png_export(synthetic_root: Path) -> None:
    import csv

    with (synthetic_root / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    first = rows[0]
    patient_dir = synthetic_root / "dicom" / first["class"] / first["patient_id"]
    result = ingest_paths([patient_dir, synthetic_root / first["class"] / first["patient_id"]])
    assert not result.rejected
    dicom_study, png_study = result.studies
    assert dicom_study.patient_id == first["patient_id"] == png_study.patient_id
    assert dicom_study.patient_key == png_study.patient_key
    assert dicom_study.gestational_age_weeks == pytest.approx(float(first["gestational_age_weeks"]), abs=0.05)
    stills = [image for image in dicom_study.images if image.frame is None]
    cine = [image for image in dicom_study.images if image.frame is not None]
    assert len(stills) == 3 and 1 <= len(cine) <= 8
    for still, png in zip(stills, png_study.images, strict=True):
        np.testing.assert_array_equal(still.pixels, png.pixels)
        assert still.scan_box is not None and png.scan_box is None
        top, bottom, left, right = still.scan_box
        assert 0 <= top < bottom <= still.height and 0 <= left < right <= still.width


def test_patient_key_is_the_salted_hash_of_the_patient_id(tmp_path: Path) -> None:
    from app.ingest.identity import patient_key

    path = write_dataset(make_us_dataset(phantom(), patient_id="PX-77"), tmp_path / "k.dcm")
    options = IngestOptions(key_salt="site-salt")
    # Other components (the web app) derive the same key from a typed-in patient ID.
    assert ingest_paths([path], options).studies[0].patient_key == patient_key("PX-77", "site-salt")


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "OBXXXX1A_rle.dcm", "US1_J2KR.dcm"])
def test_randomly_damaged_files_never_raise(tmp_path: Path, name: str) -> None:
    original = vendor_file(name).read_bytes()
    rng = np.random.default_rng(len(name))
    for attempt in range(25):
        damaged = bytearray(original)
        # Damage the header and the start of the pixel data, where parsers are most fragile.
        positions = rng.integers(132, min(len(damaged), 4000), size=int(rng.integers(1, 12)))
        for position in positions:
            damaged[position] = int(rng.integers(0, 256))
        if attempt % 5 == 0:
            damaged = damaged[: int(rng.integers(200, len(damaged)))]
        path = tmp_path / f"{attempt}.dcm"
        path.write_bytes(bytes(damaged))
        result = ingest_paths([path], IngestOptions(max_frames_per_cine=2))
        assert (result.n_images > 0) != bool(result.rejected)
        for image in result.studies[0].images if result.studies else []:
            assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 3


@pytest.mark.parametrize(
    ("fmt", "suffix"), [("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"), ("BMP", ".bmp")]
)
def test_randomly_damaged_image_exports_never_raise(tmp_path: Path, fmt: str, suffix: str) -> None:
    original = encode(phantom(), fmt)
    rng = np.random.default_rng(7)
    for attempt in range(15):
        damaged = bytearray(original)
        for position in rng.integers(8, min(len(damaged), 600), size=int(rng.integers(1, 10))):
            damaged[position] = int(rng.integers(0, 256))
        if attempt % 3 == 0:
            damaged = damaged[: int(rng.integers(20, len(damaged)))]
        path = tmp_path / f"{attempt}{suffix}"
        path.write_bytes(bytes(damaged))
        result = ingest_paths([path])
        assert (result.n_images > 0) != bool(result.rejected)


def _damage_member(archive: bytes, name: str, where: str) -> bytes:
    """``archive`` with one member's local header or compressed data overwritten."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = zf.getinfo(name)
    data = bytearray(archive)
    header = info.header_offset
    start = header + 30 + len(info.filename.encode()) + len(info.extra)
    if where == "header":
        data[header : header + 4] = b"XXXX"
    elif where == "stream":
        data[start : start + 8] = b"\xff" * 8  # an invalid deflate block type
    else:  # "checksum": flip bits mid-stream; inflating may still succeed, the CRC does not
        for offset in range(start + 200, start + 260):
            data[offset] ^= 0x5A
    return bytes(data)


@pytest.mark.parametrize("where", ["header", "stream", "checksum"])
def test_one_damaged_member_does_not_reject_the_archive(tmp_path: Path, where: str) -> None:
    members = {f"P4/{index}.png": encode(phantom(seed=index), "PNG") for index in range(3)}
    good = write_zip(tmp_path / "good.zip", members).read_bytes()
    archive = tmp_path / "exam.zip"
    archive.write_bytes(_damage_member(good, "P4/1.png", where))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = ingest_paths([archive], IngestOptions(temp_root=str(scratch)))
    assert sorted(image.source for image in result.studies[0].images) == [
        f"{archive}!P4/0.png",
        f"{archive}!P4/2.png",
    ]
    assert [r.source for r in result.rejected] == [f"{archive}!P4/1.png"]
    assert "damaged inside the ZIP archive" in result.rejected[0].reason
    assert list(scratch.iterdir()) == []
