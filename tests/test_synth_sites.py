"""Scanner sites: every site's images are ultrasound-like, croppable and reproducible."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.inference.image_kind import not_ultrasound_reason
from app.labels import PAPER_CLASSES
from app.preprocess import find_scan_area
from app.synth import generate_dataset
from app.synth.dataset import make_patient
from app.synth.geometry import sector_maps
from app.synth.planes import CNS_PLANES
from app.synth.scene import acquire, plan_view
from app.synth.sites import CURVILINEAR, DEFAULT_SITE, LINEAR, PHASED, SITES, TINTS, Site


def _render(site: Site, diagnosis: str, plane: str, index: int = 0) -> np.ndarray:
    patient = make_patient(3, index, diagnosis, site)
    rng = np.random.default_rng([index, 17])
    return acquire(plan_view(plane, patient.anatomy, rng, site), rng, ("HEADER", "2025-01-01 09:00")).pixels


def test_sites_span_probes_colour_maps_and_layouts() -> None:
    assert len(SITES) >= 5
    sites = list(SITES.values())
    assert {s.probe for s in sites} == {CURVILINEAR, PHASED, LINEAR}
    assert {s.colour_map for s in sites} >= {"grey", "sepia", "blue"}
    assert len({s.layout for s in sites}) >= 3
    assert len({s.speckle_sigma for s in sites}) >= 4
    assert len({sector_maps(s.sector).box for s in sites}) == len(sites), "each site has its own crop box"
    assert any(s.caliper_probability > 0 for s in sites) and any(s.orientation_marker for s in sites)


@pytest.mark.parametrize("name", list(SITES))
def test_every_site_is_an_ultrasound_image_whose_scan_area_is_found(name: str) -> None:
    site = SITES[name]
    box = sector_maps(site.sector).box
    for k, plane in enumerate(CNS_PLANES):
        pixels = _render(site, PAPER_CLASSES[k % len(PAPER_CLASSES)], plane, k)
        assert pixels.shape[:2] == (site.sector.height, site.sector.width)
        assert (pixels.ndim == 3) == site.coloured
        # The app's "not an ultrasound image" rule must not fire on any site's look.
        assert not_ultrasound_reason(pixels) is None, f"site {name}, {plane}"
        found = find_scan_area(pixels)
        assert max(abs(a - b) for a, b in zip(found, box, strict=True)) <= 5, (name, plane, found, box)


def test_tints_are_single_hue() -> None:
    for gains in TINTS.values():
        assert max(gains) == 1.0  # the brightest channel keeps the grey level: cropping sees no change


def test_default_site_keeps_the_original_look() -> None:
    assert DEFAULT_SITE.speckle_sigma == (1.1, 0.8)
    pixels = _render(DEFAULT_SITE, "normal", "transthalamic")
    assert pixels.ndim == 2


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_patients_are_spread_over_the_listed_sites_class_balanced(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 10, seed=4, images_per_patient=(1, 1), sites=["B", "D"])
    rows = _manifest(tmp_path)
    per_site: dict[str, Counter[str]] = {}
    for row in rows:
        per_site.setdefault(row["site"], Counter())[row["class"]] += 1
    assert set(per_site) == {"B", "D"}
    assert all(counter == Counter(PAPER_CLASSES) for counter in per_site.values())
    tinted = next(r for r in rows if r["site"] == "B")
    assert np.asarray(Image.open(tmp_path / tinted["image"])).ndim == 3


def test_default_manifest_names_the_default_site_and_random_mix_is_reproducible(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "plain", 5, seed=4, images_per_patient=(1, 1))
    assert {r["site"] for r in _manifest(tmp_path / "plain")} == {DEFAULT_SITE.name}
    for run in ("r1", "r2"):
        assert (
            main(
                [
                    "synth",
                    "--out",
                    str(tmp_path / run),
                    "--patients",
                    "12",
                    "--seed",
                    "4",
                    "--images-per-patient",
                    "1-1",
                    "--site-mix",
                    "random",
                ]
            )
            == 0
        )
    first, second = _manifest(tmp_path / "r1"), _manifest(tmp_path / "r2")
    assert first == second and len({r["site"] for r in first}) >= 3
    for row in first:
        assert (tmp_path / "r1" / row["image"]).read_bytes() == (tmp_path / "r2" / row["image"]).read_bytes()


def test_cli_refuses_an_unknown_site(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["synth", "--out", "x", "--sites", "A,Z"])
    assert "unknown sites" in capsys.readouterr().err


def test_tinted_site_writes_rgb_dicom(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    generate_dataset(tmp_path, 1, seed=2, fmt="dicom", images_per_patient=(2, 2), sites=["F"])
    files = sorted((tmp_path / "dicom").rglob("*.dcm"))
    assert files
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.PhotometricInterpretation == "RGB" and ds.ManufacturerModelName == "phantom site F"
