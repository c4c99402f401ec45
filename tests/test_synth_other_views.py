"""Non-CNS planes (abdomen, femur, four-chamber heart, face profile): drawn anatomy measured on the image.

Sizes are checked against Hadlock's femur length and abdominal circumference
converted to pixels with the view's depth setting, so a wrong scale, a wrong
formula or a structure that does not show in the B-mode image fails.
"""

from __future__ import annotations

import csv
import filecmp
import hashlib
import shutil
import subprocess
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from synth_support import polygon_mask, render

from app.cli import main
from app.synth import generate_dataset, hadlock
from app.synth.body import CARDIOTHORACIC_AREA, OTHER_PLANES, THORAX_TO_AC
from app.synth.contact_sheet import OTHER_CELL
from app.synth.dataset import MANIFEST_COLUMNS, OTHER_VIEWS_DIR, SCOPE_CNS, SCOPE_OTHER, make_patient
from app.synth.geometry import sector_maps
from app.synth.scene import RenderedImage
from app.training.data import DatasetError, discover_samples

SEEDS = (0, 1, 2, 3)


def _mm_per_px(image: RenderedImage) -> float:
    return image.view.depth_mm / (image.sector.r_max - image.sector.r_min)


def _growth(seed: int) -> tuple[float, float]:
    """(gestational age, the patient's size relative to Hadlock's mean head)."""
    anatomy = make_patient(seed, seed, "normal").anatomy
    weeks = anatomy.gestational_age_weeks
    return weeks, anatomy.bpd_mm / (10 * hadlock.bpd_cm(weeks))


def _smooth(image: RenderedImage, sigma: float = 2.0) -> np.ndarray:
    """Speckle averaged out, as an eye (or a caliper placement) does."""
    return cv2.GaussianBlur(image.pixels.astype(np.float32), (0, 0), sigma)


def _sample(grey: np.ndarray, points: np.ndarray) -> np.ndarray:
    h, w = grey.shape
    xs = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
    return grey[ys, xs]


def _along(start: np.ndarray, end: np.ndarray, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return start[None, :] * (1 - t) + end[None, :] * t


@pytest.mark.parametrize("seed", SEEDS)
def test_femur_is_a_bright_bar_of_hadlock_length(seed: int) -> None:
    image = render("normal", "femur", seed=seed, index=seed)
    weeks, growth = _growth(seed)
    expected_px = 10 * hadlock.fl_cm(weeks) * growth / _mm_per_px(image)
    grey = _smooth(image)
    inside = sector_maps(image.sector).mask
    level = 0.25 * np.median(grey[inside]) + 0.75 * np.percentile(grey[inside], 99.8)
    bright = ((grey > level) & inside).astype(np.uint8)
    count, labels = cv2.connectedComponents(bright)
    axis = np.zeros_like(bright)
    ends = [tuple(round(float(c)) for c in p) for p in image.geometry.landmarks["femur_axis"]]
    cv2.line(axis, ends[0], ends[1], 1, 9)
    overlap = np.bincount(labels[axis > 0], minlength=count)
    overlap[0] = 0
    component = labels == overlap.argmax()
    points = np.column_stack(np.nonzero(component))[:, ::-1].astype(np.float32)
    _, (w, h), _ = cv2.minAreaRect(points)
    length, width = max(w, h), min(w, h)
    assert length == pytest.approx(expected_px, rel=0.1), f"{length:.0f} px, Hadlock FL {expected_px:.0f} px"
    assert length > 6 * width, "a thin bar, not a blob"
    # The brightest structure of the whole image is the bone.
    assert component[grey >= np.percentile(grey[inside], 99.9)].mean() > 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_abdomen_is_round_with_the_hadlock_circumference_and_a_dark_stomach(seed: int) -> None:
    image = render("normal", "abdomen", seed=seed, index=seed)
    weeks, growth = _growth(seed)
    landmarks = image.geometry.landmarks
    expected_px = 10 * hadlock.ac_cm(weeks) * growth / _mm_per_px(image)
    grey = _smooth(image, 3.0)
    body = polygon_mask(landmarks["body_contour"], grey.shape)
    # The abdomen on the image: tissue brighter than the amniotic fluid around it.
    ring = cv2.dilate(body.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool) & ~body
    ring &= sector_maps(image.sector).mask
    tissue, fluid = np.median(grey[body]), np.median(grey[ring])
    assert tissue > fluid + 20
    # Walk in along 180 rays from outside until the grey reaches tissue: the skin line.
    # The median radius ignores the few rays that meet a limb or the cord first.
    centre = landmarks["body_contour"].mean(axis=0)
    angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    steps = np.arange(1.5 * expected_px / (2 * np.pi), 0, -1.0)
    radii = []
    for angle in angles:
        ray = centre + steps[:, None] * np.array([np.cos(angle), np.sin(angle)])
        hits = np.nonzero(_sample(grey, ray) > (tissue + fluid) / 2)[0]
        if len(hits) and sector_maps(image.sector).mask[tuple(np.round(ray[hits[0]][::-1]).astype(int))]:
            radii.append(steps[hits[0]])
    radii = np.array(radii)
    assert len(radii) > 150
    circumference = 2 * np.pi * np.median(radii)
    assert circumference == pytest.approx(expected_px, rel=0.1), (
        f"AC {circumference:.0f} vs {expected_px:.0f}"
    )
    q25, q75 = np.percentile(radii, [25, 75])
    assert (q75 - q25) / np.median(radii) < 0.12, "round"
    # The stomach bubble: a dark, round region inside the abdomen where the geometry put it.
    dark = ((grey < (tissue + fluid) / 2) & body).astype(np.uint8)
    _, labels = cv2.connectedComponents(dark)
    sx, sy = landmarks["stomach"].mean(axis=0)
    bubble = labels == labels[round(sy), round(sx)]
    assert labels[round(sy), round(sx)] != 0
    drawn = polygon_mask(landmarks["stomach"], grey.shape)
    assert bubble.sum() == pytest.approx(drawn.sum(), rel=0.35)
    assert (bubble & body).sum() == bubble.sum()
    assert 0.01 < bubble.sum() / body.sum() < 0.12


@pytest.mark.parametrize("seed", SEEDS)
def test_four_chamber_heart_has_four_dark_chambers_split_by_a_bright_cross(seed: int) -> None:
    image = render("normal", "four_chamber", seed=seed, index=seed)
    landmarks = image.geometry.landmarks
    grey = _smooth(image)
    heart = polygon_mask(landmarks["heart"], grey.shape)
    thorax = polygon_mask(landmarks["body_contour"], grey.shape)
    assert heart.sum() / thorax.sum() == pytest.approx(CARDIOTHORACIC_AREA, rel=0.2)
    chambers = landmarks["chambers"]
    septum, av_plane = landmarks["septum"], landmarks["av_plane"]
    # One chamber in each quadrant of the cross.
    crux = landmarks["crux"]
    along = np.sign((chambers - crux) @ (septum[1] - septum[0]))
    across = np.sign((chambers - crux) @ (av_plane[1] - av_plane[0]))
    assert set(zip(along, across, strict=True)) == {(-1, -1), (-1, 1), (1, -1), (1, 1)}
    # On the image: the chambers are dark, the septum and valve plane between them bright.
    chamber_grey = _sample(grey, chambers)
    cross = np.vstack([_along(*septum)[5:-5], _along(*av_plane)[5:-5]])
    cross_grey = np.median(_sample(grey, cross))
    assert cross_grey > chamber_grey.max() + 25
    # The cross separates them: four different dark regions, one per chamber.
    dark = ((grey < (cross_grey + chamber_grey.max()) / 2) & heart).astype(np.uint8)
    _, labels = cv2.connectedComponents(dark)
    ids = _sample(labels, chambers)
    assert 0 not in ids and len(set(ids.tolist())) == 4


@pytest.mark.parametrize("seed", SEEDS)
def test_face_profile_is_a_tissue_boundary_against_the_fluid(seed: int) -> None:
    image = render("normal", "face_profile", seed=seed, index=seed)
    profile = image.geometry.landmarks["profile"]
    cranium = image.geometry.extent[1]
    grey = _smooth(image)
    step = np.gradient(profile, axis=0)
    normal = np.stack([-step[:, 1], step[:, 0]], axis=1) / np.hypot(step[:, 0], step[:, 1])[:, None]
    away = np.sign(np.sum((profile - cranium.mean(axis=0)) * normal, axis=1))[:, None]
    normal *= away  # pointing out of the face, into the fluid
    outside = _sample(grey, profile + 8 * normal)
    inside = _sample(grey, profile - 8 * normal)
    contrast = inside - outside
    assert np.median(contrast) > 20
    assert (contrast > 0).mean() > 0.85
    # Nose and lips stand out from the line joining forehead and chin.
    forehead, chin = profile[len(profile) // 5], profile[int(len(profile) * 0.9)]
    chord = (chin - forehead) / np.hypot(*(chin - forehead))
    offset = (profile - forehead) @ np.array([-chord[1], chord[0]])
    middle = offset[len(profile) // 3 : int(len(profile) * 0.8)]
    depth_px = np.ptp(offset)
    assert np.abs(middle).max() > 0.05 * np.hypot(*(chin - forehead)) and depth_px > 5


def test_other_views_carry_no_lesion_and_every_class_gets_a_normal_body() -> None:
    for diagnosis in ("Anencephaly", "Rachischisis"):
        for plane in OTHER_PLANES:
            image = render(diagnosis, plane, seed=5)
            assert not image.mask.any()
            inside = image.pixels[sector_maps(image.sector).mask]
            assert inside.min() >= 12 and inside.std() > 10


def test_thorax_is_scaled_from_the_abdominal_circumference() -> None:
    image = render("normal", "four_chamber", seed=1, index=1)
    weeks, growth = _growth(1)
    contour = image.geometry.landmarks["body_contour"]
    perimeter = cv2.arcLength(contour.astype(np.float32), True) * _mm_per_px(image)
    assert perimeter == pytest.approx(THORAX_TO_AC * 10 * hadlock.ac_cm(weeks) * growth, rel=0.03)


# --- Datasets: layout, manifest, DICOM, training, CLI -------------------------------------------

# sha256 over (relative path, decoded pixels) of every PNG, and over (relative path, PixelData)
# of every single-frame DICOM file, of generate_dataset(OUT, 2, seed=5, fmt="both",
# images_per_patient=(2, 2)), regenerated when issue 11 gave every class one plane mix and drew
# anomaly variants (the default site renders as before). If you change the CNS phantoms on
# purpose, regenerate these; the non-CNS views must never change them. Patient folders are
# SYN<full seed>-<n> (SYN5-00001).
GOLDEN_PNG = "7b992241aa0ae41097ceb13f9e29d1af55a8e44a64b577b90bf9fb2a4220ec7e"
GOLDEN_DICOM_STILLS = "f484615f78488aae09cbc5df31a38a0ed241b84d945376a57125124594f3aca2"
# The cine loops, as (relative path, frames, mean grey level): their frames are not bit-stable
# across processors. numpy's AVX-512 transcendental functions round differently from its AVX2
# ones, and about one pixel in a million of a loop lands one grey level apart (measured: 4 and 2
# pixels of the two loops, by 1). The stills and PNGs do not move.
GOLDEN_CINE = (
    ("dicom/Anencephaly/SYN5-00001/CINE0001.dcm", 9, 14.521763),
    ("dicom/Encephalocele_meningocele/SYN5-00002/CINE0001.dcm", 11, 19.416295),
)
# A grey level on a few pixels moves a loop's mean by about 1e-6; a change to the phantoms moves it
# by orders of magnitude more.
CINE_MEAN_TOLERANCE = 1e-4


# The two files beside the images: the manifest and the record of how the set was made.
RECORDS = {"manifest.csv", "dataset.json"}


def _digests(out: Path, skip: str | None = None) -> tuple[str, str]:
    """(PNG digest, single-frame DICOM digest); the loops are checked by ``_check_cine``."""
    png, dicom = hashlib.sha256(), hashlib.sha256()
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if skip and skip in path.relative_to(out).parts:
            continue
        if path.suffix == ".png":
            png.update(rel.encode())
            png.update(np.asarray(Image.open(path)).tobytes())
        elif path.suffix == ".dcm" and not path.name.startswith("CINE"):
            dicom.update(rel.encode())
            dicom.update(pydicom.dcmread(path).PixelData)
    return png.hexdigest(), dicom.hexdigest()


def _check_cine(out: Path, skip: str | None = None) -> None:
    loops = [p for p in sorted(out.rglob("CINE*.dcm")) if not (skip and skip in p.relative_to(out).parts)]
    assert len(loops) == len(GOLDEN_CINE)
    for path, (rel, frames, mean) in zip(loops, GOLDEN_CINE, strict=True):
        pixels = pydicom.dcmread(path).pixel_array
        assert (path.relative_to(out).as_posix(), pixels.shape[0]) == (rel, frames)
        assert float(pixels.mean(dtype=np.float64)) == pytest.approx(mean, abs=CINE_MEAN_TOLERANCE)


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def with_others(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth-other-views")
    generate_dataset(out, 2, seed=5, fmt="both", images_per_patient=(2, 2), include_other_views=True)
    return out


def test_default_output_is_unchanged_and_other_views_leave_cns_files_alone(
    with_others: Path, tmp_path: Path
) -> None:
    generate_dataset(tmp_path, 2, seed=5, fmt="both", images_per_patient=(2, 2))
    assert _digests(tmp_path) == (GOLDEN_PNG, GOLDEN_DICOM_STILLS)
    _check_cine(tmp_path)
    assert not (tmp_path / OTHER_VIEWS_DIR).exists()
    assert {r["view_scope"] for r in _rows(tmp_path)} == {SCOPE_CNS}
    # The same CNS files, byte for byte, when other views are added.
    cns = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and p.name not in RECORDS]
    match, mismatch, errors = filecmp.cmpfiles(tmp_path, with_others, [str(p) for p in cns], shallow=False)
    assert not mismatch and not errors and len(match) == len(cns)
    assert _digests(with_others, skip=OTHER_VIEWS_DIR) == (GOLDEN_PNG, GOLDEN_DICOM_STILLS)
    _check_cine(with_others, skip=OTHER_VIEWS_DIR)
    cns_rows = [r for r in _rows(with_others) if r["view_scope"] == SCOPE_CNS]
    assert cns_rows == _rows(tmp_path)


def test_manifest_marks_other_views_out_of_scope_without_masks(with_others: Path) -> None:
    rows = _rows(with_others)
    others = [r for r in rows if r["view_scope"] == SCOPE_OTHER]
    assert {r["view_scope"] for r in rows} == {SCOPE_CNS, SCOPE_OTHER}
    assert others and all(r["plane"] in OTHER_PLANES for r in others)
    assert all(r["plane"] not in OTHER_PLANES for r in rows if r["view_scope"] == SCOPE_CNS)
    for row in others:
        assert row["mask"] == ""
        assert Path(row["image"]).parts[:2] == (OTHER_VIEWS_DIR, row["patient_id"])
        assert (with_others / row["image"]).is_file()
        assert "not CNS" in Image.open(with_others / row["image"]).text["Description"]  # type: ignore[attr-defined]
    for pid in {r["patient_id"] for r in others}:
        planes = [r["plane"] for r in others if r["patient_id"] == pid]
        assert 1 <= len(planes) <= 3 and len(set(planes)) == len(planes)
    assert not (with_others / "masks" / OTHER_VIEWS_DIR).exists()
    listed = {r["image"] for r in rows} | {r["mask"] for r in rows if r["mask"]}
    pngs = {p.relative_to(with_others).as_posix() for p in with_others.rglob("*.png")}
    assert listed == pngs


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pydicom.dcmread(path)
        _ = ds.pixel_array
    return ds


def test_other_views_dicom_is_series_3_of_the_same_study_and_valid(with_others: Path) -> None:
    files = sorted((with_others / "dicom" / OTHER_VIEWS_DIR).rglob("*.dcm"))
    others = [r for r in _rows(with_others) if r["view_scope"] == SCOPE_OTHER]
    assert len(files) == len(others)
    for path in files:
        ds = _read(path)
        (first,) = (
            p
            for p in (with_others / "dicom").glob(f"*/{ds.PatientID}/IM0001.dcm")
            if p.parts[-3] != OTHER_VIEWS_DIR
        )
        study = _read(first)
        assert ds.StudyInstanceUID == study.StudyInstanceUID
        assert ds.SeriesNumber == 3 and ds.SeriesInstanceUID != study.SeriesInstanceUID
        assert ds.SOPInstanceUID != study.SOPInstanceUID
        assert "not CNS" in ds.SeriesDescription and "synthetic" in ds.ImageComments
        assert ds.pixel_array.shape[:2] == (480, 640)
        assert float(ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX) > 0
    dcmdump = shutil.which("dcmdump")
    if dcmdump is None:
        pytest.skip("dcmtk's dcmdump is not installed (apt-get install dcmtk); independent check skipped")
    for path in files:
        result = subprocess.run([dcmdump, "-q", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert "E:" not in result.stderr and "W:" not in result.stderr, result.stderr


def test_training_never_reads_other_views(with_others: Path, tmp_path: Path) -> None:
    samples = discover_samples(with_others)
    cns_images = {
        (with_others / r["image"]).resolve() for r in _rows(with_others) if r["view_scope"] == "cns"
    }
    assert {s.path.resolve() for s in samples} == cns_images
    # Even a non-CNS image filed in a class folder stays out when its manifest row says so.
    data = tmp_path / "data"
    shutil.copytree(with_others, data, ignore=shutil.ignore_patterns("dicom"))
    rows = _rows(data)
    other = next(r for r in rows if r["view_scope"] == SCOPE_OTHER)
    moved = Path(other["class"]) / other["patient_id"] / Path(other["image"]).name
    shutil.move(data / other["image"], data / moved)
    other["image"] = moved.as_posix()
    with (data / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    found = {s.path.resolve() for s in discover_samples(data)}
    assert (data / moved).resolve() not in found
    assert len(found) == len(samples)


def test_cli_other_views_only_writes_a_folder_of_non_cns_images(tmp_path: Path) -> None:
    argv = ["synth", "--out", str(tmp_path), "--patients", "2", "--seed", "4", "--other-views-only"]
    assert main([*argv, "--other-views-per-patient", "2-2"]) == 0
    rows = _rows(tmp_path)
    assert len(rows) == 4 and {r["view_scope"] for r in rows} == {SCOPE_OTHER}
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert files == RECORDS | {r["image"] for r in rows}
    assert all(f.startswith(f"{OTHER_VIEWS_DIR}/") for f in files - RECORDS)
    with pytest.raises(DatasetError, match="no images"):
        discover_samples(tmp_path)


def test_cli_other_views_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "other.png"
    assert main(["synth", "--other-views-sheet", str(sheet)]) == 0
    image = np.asarray(Image.open(sheet))
    assert image.shape == (2 * OTHER_CELL[0], len(OTHER_PLANES) * OTHER_CELL[1])


def test_bad_other_views_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="other views per patient"):
        generate_dataset(tmp_path, 1, include_other_views=True, other_views_per_patient=(3, 2))


def test_cli_include_and_only_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", "x", "--include-other-views", "--other-views-only"])
    assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_other_views_only_as_dicom_lists_the_dicom_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 1, seed=6, fmt="dicom", other_views_only=True, other_views_per_patient=(2, 2))
    rows = _rows(tmp_path)
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert files == RECORDS | {r["image"] for r in rows}
    assert all(r["image"].startswith(f"dicom/{OTHER_VIEWS_DIR}/") and r["mask"] == "" for r in rows)
    assert [_read(tmp_path / r["image"]).InstanceNumber for r in rows] == [1, 2]
