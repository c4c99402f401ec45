"""The ingestion fuzz harness: hostile inputs grown from real seed files, and the property they
must satisfy. Used by tests/test_ingest_fuzz.py (a short seeded run) and
benchmarks/fuzz_ingest.py (100,000 inputs).

Seeds are real files: pydicom's bundled test files (several transfer syntaxes, 8 to 16 bits,
RGB, YBR, palette, multi-frame), hand-made ultrasound DICOMs with regions, PNG/JPEG/BMP/TIFF
exports, and ZIPs of them. Mutations: bit flips, byte overwrites with boundary values,
insertions, deletions, duplications, truncation, DICOM header fields set to hostile values or
removed (then re-encoded, so that the file still parses and the decoder meets the lie), and ZIP
structure (traversal names, nested archives, links, junk, empty archives, stored/deflated).

The property (``check_ingestion``): ``ingest_paths`` never raises; the input is either imported
or rejected with a non-empty reason (a single file: exactly one of the two); images are display
RGB uint8 with a crop box inside them; no reason quotes the seed's patient name or ID; and
nothing is half-written: the archive temp folder is emptied and the input is left as it was.
"""

from __future__ import annotations

import copy
import io
import re
import shutil
import stat
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from app.ingest import IngestOptions, ingest_paths

# ---- seeds -------------------------------------------------------------------------------
# pydicom's own test files (pydicom and pydicom-data), all small: one or few frames.
PYDICOM_SEEDS = (
    "CT_small.dcm",  # 16-bit signed MONOCHROME2, explicit little endian
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_small_odd.dcm",
    "JPEG2000.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm",
    "emri_small.dcm",  # 10 frames, 16-bit
    "SC_rgb.dcm",
    "US1_J2KR.dcm",  # ultrasound, JPEG 2000 lossless, RGB
    "rtplan.dcm",  # no pixels: must be rejected
)
PATIENT_NAME = "Fuzzpatient^Erika"
PATIENT_ID = "FUZZ-PID-4711"


@dataclass(frozen=True)
class Seed:
    name: str
    kind: str  # "dicom" | "raster"
    data: bytes
    suffix: str


@dataclass
class FuzzInput:
    filename: str
    data: bytes
    kind: str
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.filename} ({len(self.data)} bytes): " + ", ".join(self.steps)


def _us_pixels(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    fan = np.hypot(yy, xx - width / 2) < height * 0.95
    return (rng.gamma(2.0, 40.0, size=(height, width)) * fan).clip(0, 255).astype(np.uint8)


def _us_dataset(pixels: np.ndarray, frames: int = 1) -> Any:
    """An ultrasound DICOM like a scanner's: patient fields, a tissue region, 8-bit pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["fuzz", str(pixels.shape), str(frames)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["fuzz-study"])
    ds.PatientID, ds.PatientName, ds.Modality = PATIENT_ID, PATIENT_NAME, "US"
    ds.StudyDate, ds.ImageComments = "20250314", "GA 21w3d"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    ds.PhotometricInterpretation = "RGB" if pixels.ndim == 3 else "MONOCHROME2"
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
        pixels = np.stack([np.roll(pixels, 3 * i, axis=1) for i in range(frames)])
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 4, 2
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = ds.Columns - 5, ds.Rows - 3
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def _encode(ds: Any) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def _raster(pixels: np.ndarray, ext: str, params: tuple[int, ...] = ()) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(ext, pixels, list(params))
    assert ok, ext
    return encoded.tobytes()


@lru_cache(maxsize=1)
def seeds() -> tuple[tuple[Seed, ...], dict[str, Any]]:
    """The seed files, and the parsed dataset of every DICOM seed (for header mutations)."""
    import cv2
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import RLELossless

    found: list[Seed] = []
    datasets: dict[str, Any] = {}
    for name in PYDICOM_SEEDS:
        # One file at a time and download=False: get_testdata_files (plural) searches the
        # network cache and can stall.
        path = get_testdata_file(name, download=False)
        if path is None:
            continue
        data = Path(str(path)).read_bytes()
        found.append(Seed(name, "dicom", data, ".dcm"))
        datasets[name] = pydicom.dcmread(io.BytesIO(data))
    grey = _us_pixels(60, 80, 1)
    rgb = np.stack([grey, np.roll(grey, 5, axis=1), 255 - grey], axis=2)
    made = {
        "us_grey.dcm": _us_dataset(grey),
        "us_rgb.dcm": _us_dataset(rgb),
        "us_cine.dcm": _us_dataset(grey, frames=4),
    }
    rle = copy.deepcopy(made["us_grey.dcm"])
    rle.compress(RLELossless)
    made["us_rle.dcm"] = rle
    for name, ds in made.items():
        found.append(Seed(name, "dicom", _encode(ds), ".dcm"))
        datasets[name] = ds
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    rasters = {
        "grey.png": _raster(grey, ".png"),
        "rgb.png": _raster(bgr, ".png"),
        "grey16.png": _raster(grey.astype(np.uint16) * 257, ".png"),
        "rgb.jpg": _raster(bgr, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, 80)),
        "progressive.jpg": _raster(bgr, ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        "grey.bmp": _raster(grey, ".bmp"),
        "rgb.tif": _raster(bgr, ".tif"),
    }
    for name, data in rasters.items():
        found.append(Seed(name, "raster", data, Path(name).suffix))
    return tuple(found), datasets


# ---- mutations ---------------------------------------------------------------------------
BOUNDARY = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
# A position: mostly near the start, where headers and the DICOM meta information live.
positions = st.one_of(st.integers(0, 1023), st.integers(0, 1 << 24))


def _at(data: bytes | bytearray, position: int) -> int:
    return position % len(data) if data else 0


byte_mutations = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(0, 7)),
    st.tuples(st.just("set"), positions, st.integers(0, 255)),
    st.tuples(st.just("boundary"), positions, st.sampled_from(BOUNDARY), st.sampled_from((1, 2, 4))),
    st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), positions, st.integers(1, 256)),
    st.tuples(st.just("duplicate"), positions, st.integers(1, 512)),
    st.tuples(st.just("truncate"), positions),
)


def mutate_bytes(data: bytes, op: tuple[Any, ...]) -> bytes:
    buf = bytearray(data)
    kind, position = op[0], _at(buf, op[1])
    if not buf and kind != "insert":
        return data
    if kind == "flip":
        buf[position] ^= 1 << op[2]
    elif kind == "set":
        buf[position] = op[2]
    elif kind == "boundary":
        value, width = op[2], op[3]
        buf[position : position + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    elif kind == "insert":
        buf[position:position] = op[2]
    elif kind == "delete":
        del buf[position : position + op[2]]
    elif kind == "duplicate":
        buf[position:position] = buf[position : position + op[2]]
    elif kind == "truncate":
        del buf[position:]
    return bytes(buf)


# DICOM attributes and hostile values for them (None deletes the attribute).
_INTS = st.sampled_from((None, 0, 1, 2, 3, 4, 7, 8, 12, 15, 16, 17, 24, 32, 64, 255, 256, 4096, 65535))
HEADER_FIELDS: dict[str, Any] = {
    "Rows": _INTS,
    "Columns": _INTS,
    "BitsAllocated": _INTS,
    "BitsStored": _INTS,
    "HighBit": _INTS,
    "SamplesPerPixel": _INTS,
    "PixelRepresentation": st.sampled_from((None, 0, 1, 2)),
    "PlanarConfiguration": st.sampled_from((None, 0, 1, 2)),
    "NumberOfFrames": st.sampled_from((None, "0", "1", "2", "3", "10", "1000", "-1", "9999999")),
    "PhotometricInterpretation": st.sampled_from(
        (
            None,
            "",
            "MONOCHROME1",
            "MONOCHROME2",
            "RGB",
            "YBR_FULL",
            "YBR_FULL_422",
            "PALETTE COLOR",
            "YBR_ICT",
            "YBR_RCT",
            "ARGB",
            "CMYK",
            "HSV",
            "XYZ",
        )
    ),
    "TransferSyntaxUID": st.sampled_from(
        (
            None,
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.57",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.80",
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.91",
            "1.2.840.10008.1.2.4.100",
            "1.2.840.10008.1.2.4.201",
            "1.2.840.10008.1.2.5",
            "1.2.3.4",
        )
    ),
    "SOPClassUID": st.sampled_from(
        (
            None,
            "1.2.840.10008.5.1.4.1.1.6.1",
            "1.2.840.10008.5.1.4.1.1.88.33",
            "1.2.840.10008.5.1.4.1.1.104.1",
            "1.2.840.10008.5.1.4.1.1.3.1",
            "9.9",
        )
    ),
    "WindowCenter": st.sampled_from((None, "0", "-1", "40", "1e30", "-1e30", "NaN")),
    "WindowWidth": st.sampled_from((None, "0", "-1", "1", "400", "1e30")),
    "RescaleSlope": st.sampled_from((None, "0", "-1", "1e30", "0.0001")),
    "RescaleIntercept": st.sampled_from((None, "-1024", "1e30")),
    "PixelData": st.sampled_from((None, b"", b"\x00", b"\xff" * 7)),
    "StudyDate": st.sampled_from((None, "", "00010101", "99999999", "2025-03-14", "garbage")),
    "ImageComments": st.sampled_from((None, "GA 99w", "GA -3w", "GA 21w" * 200)),
    "LastMenstrualDate": st.sampled_from((None, "19000101", "20250101", "bad")),
    "PatientID": st.sampled_from((None, "", "x" * 300)),
    "RegionLocationMaxX1": st.sampled_from((0, -1, 15, 65535, 2**31 - 1)),
    "RegionLocationMinY0": st.sampled_from((0, -5, 2**31 - 1)),
}
header_changes = st.lists(
    st.sampled_from(sorted(HEADER_FIELDS)).flatmap(lambda key: st.tuples(st.just(key), HEADER_FIELDS[key])),
    min_size=1,
    max_size=4,
)


def change_header(ds: Any, changes: list[tuple[str, Any]]) -> bytes | None:
    """Re-encode ``ds`` with the changes; None when pydicom refuses to write the result."""
    import pydicom

    ds = copy.deepcopy(ds)
    with warnings.catch_warnings(), pydicom.config.disable_value_validation():
        warnings.simplefilter("ignore")
        try:
            for keyword, value in changes:
                _set(ds, keyword, value)
            return _encode(ds)
        except Exception:
            return None


def _set(ds: Any, keyword: str, value: Any) -> None:
    if keyword == "TransferSyntaxUID":
        ds = ds.file_meta
    elif keyword.startswith("Region"):
        regions = ds.get("SequenceOfUltrasoundRegions")
        if not regions:
            return
        ds = regions[0]
    if value is None:
        if keyword in ds:
            delattr(ds, keyword)
    else:
        setattr(ds, keyword, value)


_MEMBER_NAMES = st.sampled_from(
    (
        "img.dcm",
        "study/img1.dcm",
        "study/sub/img2.png",
        "IMG0001",
        "../evil.dcm",
        "/abs/evil.dcm",
        "C:/evil.dcm",
        "__MACOSX/._img.dcm",
        ".DS_Store",
        "dir/",
        "nested.zip",
        "ünïcode/bild.jpg",
        "a" * 200 + ".dcm",
    )
)


@st.composite
def _seed_bytes(
    draw: st.DrawFn, kinds: tuple[str, ...] = ("dicom", "raster")
) -> tuple[Seed, bytes, list[str]]:
    all_seeds, datasets = seeds()
    seed = draw(st.sampled_from([s for s in all_seeds if s.kind in kinds]))
    data, steps = seed.data, [seed.name]
    if seed.name in datasets and draw(st.integers(0, 2)) == 0:
        changes = draw(header_changes)
        changed = change_header(datasets[seed.name], changes)
        if changed is not None:
            data = changed
            steps.append("header " + ", ".join(f"{k}={v!r}"[:60] for k, v in changes))
    for op in draw(st.lists(byte_mutations, max_size=6)):
        data = mutate_bytes(data, op)
        steps.append(f"{op[0]}@{op[1]}")
    return seed, data, steps


@st.composite
def _zip_input(draw: st.DrawFn) -> FuzzInput:
    members = draw(st.lists(st.tuples(_MEMBER_NAMES, _seed_bytes()), max_size=4))
    compression = draw(st.sampled_from((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)))
    buffer = io.BytesIO()
    steps = [f"zip {'deflated' if compression else 'stored'}"]
    # Duplicate member names are on purpose; zipfile warns about each.
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression) as archive:
        warnings.simplefilter("ignore")
        for name, (_seed, data, member_steps) in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            special = draw(st.sampled_from(("plain", "plain", "plain", "link", "nested", "dup")))
            if special == "link":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                data = b"/etc/passwd"
            elif special == "nested":
                inner = io.BytesIO()
                with zipfile.ZipFile(inner, "w") as nested:
                    nested.writestr("inner.dcm", data)
                data = inner.getvalue()
            archive.writestr(info, data)
            if special == "dup":
                archive.writestr(zipfile.ZipInfo(name), data)
            steps.append(f"{name[:40]} [{special}] = " + ", ".join(member_steps))
    data = buffer.getvalue()
    for op in draw(st.lists(byte_mutations, max_size=4)):
        data = mutate_bytes(data, op)
        steps.append(f"zip {op[0]}@{op[1]}")
    return FuzzInput("study.zip", data, "zip", steps)


@st.composite
def fuzz_inputs(draw: st.DrawFn) -> FuzzInput:
    """One hostile input: a mutated DICOM, a mutated raster image, or a (mutated) ZIP of them."""
    kind = draw(st.sampled_from(("dicom", "dicom", "dicom", "dicom", "raster", "raster", "zip", "zip")))
    if kind == "zip":
        return draw(_zip_input())
    seed, data, steps = draw(_seed_bytes((kind,)))
    # The name must not matter: files are recognised by their bytes.
    filename = draw(st.sampled_from(("upload" + seed.suffix, "upload.bin", "IMG0001", "upload.zip")))
    return FuzzInput(filename, data, kind, steps)


# ---- the property ------------------------------------------------------------------------
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
FUZZ_OPTIONS = {"max_file_bytes": 16 * 1024 * 1024, "max_pixels_per_frame": 4_000_000}


def _private_values() -> tuple[str, ...]:
    values = {PATIENT_NAME, PATIENT_ID, "Fuzzpatient"}
    for ds in seeds()[1].values():
        for keyword in ("PatientName", "PatientID"):
            text = str(ds.get(keyword, "") or "").strip()
            if len(text) >= 4:
                values.add(text)
    return tuple(values)


def check_ingestion(item: FuzzInput, workdir: Path) -> tuple[list[str], int]:
    """Ingest ``item`` from a fresh upload folder: the property's violations (empty: it held) and
    how many images were imported."""
    upload, temp_root = workdir / "upload", workdir / "unpack"
    for folder in (upload, temp_root):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    path = upload / item.filename
    path.write_bytes(item.data)
    options = IngestOptions(temp_root=str(temp_root), **FUZZ_OPTIONS)
    try:
        result = ingest_paths([path], options)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return [f"ingest_paths raised {type(exc).__name__}: {str(exc)[:200]}"], 0
    problems: list[str] = []
    images = [image for study in result.studies for image in study.images]
    if item.kind != "zip" and bool(images) == bool(result.rejected):
        problems.append(f"a single file gave {len(images)} images and {len(result.rejected)} rejections")
    if not images and not result.rejected:
        problems.append("the input was neither imported nor rejected")
    private = _private_values()
    for rejection in result.rejected:
        if not rejection.reason.strip():
            problems.append(f"empty rejection reason for {rejection.source}")
        if not rejection.source.startswith(str(path)):
            problems.append(f"a rejection names a file that was not given: {rejection.source}")
        if any(value in rejection.reason for value in private):
            problems.append(f"a rejection reason quotes patient data: {rejection.reason[:80]}")
    for image in images:
        pixels = image.pixels
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
            problems.append(f"an image is not display RGB uint8: {pixels.dtype} {pixels.shape}")
            continue
        if not _SHA256.match(image.sha256):
            problems.append("an image has no sha256")
        if image.scan_box is not None:
            top, bottom, left, right = image.scan_box
            if not (0 <= top < bottom <= image.height and 0 <= left < right <= image.width):
                problems.append(f"crop box {image.scan_box} outside the {image.height}×{image.width} image")
    leftovers = sorted(p.name for p in temp_root.iterdir())
    if leftovers:
        problems.append(f"ingestion left {leftovers[:3]} in its temp folder")
    if sorted(p.name for p in upload.iterdir()) != [item.filename] or path.read_bytes() != item.data:
        problems.append("ingestion changed the upload folder")
    return problems, len(images)


@dataclass
class FuzzTally:
    """Counts of a run: inputs checked, how many gave images, how many only rejections, failures."""

    inputs: int = 0
    imported: int = 0
    rejected: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)


def counting_body(
    tally: FuzzTally, workdir: Path, on_failure: Callable[[FuzzInput, list[str]], None] | None = None
) -> Callable[[FuzzInput], None]:
    """The body of a hypothesis test that counts instead of raising: the 100,000-input run must see
    every failure, not stop at the first one to shrink it."""

    def body(item: FuzzInput) -> None:
        problems, n_images = check_ingestion(item, workdir)
        tally.inputs += 1
        tally.by_kind[item.kind] = tally.by_kind.get(item.kind, 0) + 1
        if problems:
            tally.failures.append({"input": item.describe()[:600], "problems": problems})
            if on_failure is not None:
                on_failure(item, problems)
        elif n_images:
            tally.imported += 1
        else:
            tally.rejected += 1

    return body
