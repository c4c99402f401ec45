"""The reading room in Chromium against a real server: the cine player (play, pause, step, the
per-frame timeline, the most suspicious frame), window/level, zoom kept per image, a caliper on
a DICOM image with an ultrasound region giving the right millimetres, and the structured report
downloaded as a PDF. Expected values come from the DICOM files themselves (pydicom), not from
the app. Screenshots go to test-artifacts/ (and to $FETALCNS_SHOTS_DIR when set).
"""

from __future__ import annotations

import io
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from pdf_text_support import pdf_text
from PIL import Image
from web_browser_support import (
    ARTIFACTS,
    CHROMIUM,
    PASSWORD,
    chromium_page,
    live_server,
    sign_in,
    synthetic_dicom_study,
    unlabelled_controls,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )


def _shot(page: Any, name: str, **kwargs: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), **kwargs)
    extra = os.environ.get("FETALCNS_SHOTS_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / name)


def _upload(base_url: str, token: str, files: list[Path]) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    multipart = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in files]
    response = httpx.post(f"{base_url}/api/v1/studies", files=multipart, headers=headers, timeout=120)
    assert response.status_code == 202, response.text
    study_id = int(response.json()["study_id"])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        study = httpx.get(f"{base_url}/api/v1/studies/{study_id}", headers=headers, timeout=30).json()
        if study["status"] in ("done", "failed"):
            assert study["status"] == "done", study
            return study_id
        time.sleep(0.5)
    raise AssertionError("the study was not analysed in time")


def _mean_grey(png: bytes) -> float:
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64).mean())


def _frame(page: Any) -> int:
    return int(page.locator("[data-cine]").get_attribute("data-frame"))


def _image_point_to_screen(page: Any, x: float, y: float) -> tuple[float, float]:
    """Where image pixel (x, y) of the shown original is on screen, from the layer's own box."""
    box = page.evaluate(
        """() => { const layer = document.querySelector('[data-viewer] .viewer-layer');
                   const img = layer.querySelector('img.base'); const r = layer.getBoundingClientRect();
                   return {left: r.left, top: r.top, w: r.width, h: r.height,
                           nw: img.naturalWidth, nh: img.naturalHeight}; }"""
    )
    return box["left"] + x * box["w"] / box["nw"], box["top"] + y * box["h"] / box["nh"]


def test_cine_window_level_caliper_and_report(tmp_path: Path, served_model_dir: Path) -> None:
    files = synthetic_dicom_study(tmp_path / "synthetic")
    cine_file = next(
        p for p in files if int(pydicom.dcmread(p, stop_before_pixels=True).get("NumberOfFrames") or 1) > 1
    )
    cine_header = pydicom.dcmread(cine_file, stop_before_pixels=True)
    n_frames = int(cine_header.NumberOfFrames)
    still_file = next(p for p in files if p != cine_file)
    still_header = pydicom.dcmread(still_file, stop_before_pixels=True)
    region = still_header.SequenceOfUltrasoundRegions[0]
    assert (region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection) == (3, 3)  # cm
    with live_server(tmp_path / "server", served_model_dir) as server, chromium_page() as page:
        token = httpx.post(
            f"{server.url}/api/v1/auth/token", data={"username": "rad", "password": PASSWORD}, timeout=30
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        study_id = _upload(server.url, token, files)
        study = httpx.get(f"{server.url}/api/v1/studies/{study_id}", headers=headers, timeout=30).json()
        loop_frames = sorted(
            (i for i in study["images"] if i["frame"] is not None), key=lambda i: int(i["frame"])
        )
        # Every frame of the loop is stored, in order (the synthetic loop is under the limit).
        assert [i["frame"] for i in loop_frames] == list(range(n_frames))
        assert all(i["n_frames"] == n_frames and i["frames_stored"] == n_frames for i in loop_frames)
        # The loop counts as one image of the verdict: the stills plus one.
        n_stills = len(files) - 1
        assert study["verdict"]["n_total"] == n_stills + 1
        normal = "normal"
        p_anomaly = [1 - i["probabilities"][normal] if i["probabilities"] else None for i in loop_frames]
        scored = [p for p in p_anomaly if p is not None]
        assert scored, "no frame of the loop was analysed"
        worst = p_anomaly.index(max(scored))

        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(page, server.url, "rad")
        page.goto(f"{server.url}/cases/{study_id}")
        page.wait_for_function("() => document.querySelector('img.base').naturalWidth > 0")
        assert page.locator(".thumb").count() == n_stills + 1  # one thumbnail for the whole loop
        count = page.locator("[data-image-count]").inner_text()
        assert count == f"{n_stills} + 1 cine loop ({n_frames} frames)"
        assert page.locator("[data-cine]").is_hidden()  # a still first: no player

        # ---- cine: step, slider, play, pause, timeline, most suspicious frame
        page.locator(".thumb.is-loop").click()
        cine = page.locator("[data-cine]")
        cine.wait_for(state="visible")
        assert page.locator("[data-cine-frame]").inner_text() == f"Frame 1 of {n_frames}"
        assert page.locator("[data-cine-timeline] .tl-bar").count() == n_frames
        assert page.locator("[data-cine-timeline] .tl-bar:not(.tl-none)").count() == len(scored)
        page.get_by_role("button", name="Next frame").click()
        assert _frame(page) == 1 and page.locator("[data-cine-slider]").input_value() == "1"
        assert page.locator("[data-cine-frame]").inner_text() == f"Frame 2 of {n_frames}"
        shown = page.eval_on_selector("[data-viewer] img.base", "el => el.getAttribute('src')")
        assert shown == loop_frames[1]["image_url"]
        page.get_by_role("button", name="Previous frame").click()
        assert _frame(page) == 0
        page.get_by_role("slider", name="Frame").fill(str(n_frames - 1))
        assert _frame(page) == n_frames - 1
        page.get_by_role("button", name="Play").click()
        seen = set()
        deadline = time.monotonic() + 15
        while len(seen) < min(n_frames, 5) and time.monotonic() < deadline:
            seen.add(_frame(page))
            time.sleep(0.02)
        assert len(seen) >= min(n_frames, 5), f"playback showed only frames {sorted(seen)}"
        page.get_by_role("button", name="Pause").click()
        paused_at = _frame(page)
        time.sleep(0.4)
        assert _frame(page) == paused_at and cine.get_attribute("data-playing") == "false"
        # The keyboard: "." steps forward, "," back.
        page.locator(".viewer-stage").first.focus()
        page.keyboard.press(".")
        assert _frame(page) == (paused_at + 1) % n_frames
        page.keyboard.press(",")
        assert _frame(page) == paused_at
        # Space plays and pauses (focus outside a form field).
        page.keyboard.press("Space")
        page.wait_for_function("() => document.querySelector('[data-cine]').dataset.playing === 'true'")
        page.keyboard.press("Space")
        assert cine.get_attribute("data-playing") == "false"
        page.get_by_role("button", name="Most suspicious frame").click()
        assert _frame(page) == worst
        _shot(page, "reading-room-cine.png", full_page=True)

        # ---- window/level on a still: drag, preset, reset with one key
        page.locator(".thumb").first.click()
        page.wait_for_function("() => document.querySelector('img.base').naturalWidth > 0")
        heat = page.get_by_role("checkbox", name="Heatmap")
        heat.uncheck()
        stage = page.locator("[data-viewer] .viewer-stage").first
        before = _mean_grey(stage.screenshot())
        page.get_by_role("radio", name="Window/level").check()
        box = stage.bounding_box()
        assert box is not None
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx - 120, cy - 60, steps=5)  # narrower window, lower level: more contrast, brighter
        page.mouse.up()
        viewer = page.locator("[data-viewer]")
        window, level = float(viewer.get_attribute("data-window")), float(viewer.get_attribute("data-level"))
        assert (window, level) == (135.0, 67.5)
        slope = float(page.eval_on_selector("filter feFuncR", "el => el.getAttribute('slope')"))
        assert slope == pytest.approx(255 / window, abs=1e-4)
        after = _mean_grey(stage.screenshot())
        assert after > before + 5, (before, after)
        page.get_by_label("Brightness/contrast").select_option(label="High contrast")
        assert viewer.get_attribute("data-window") == "100"
        page.keyboard.press("r")
        assert (viewer.get_attribute("data-window"), viewer.get_attribute("data-level")) == ("255", "127.5")
        assert page.eval_on_selector("[data-viewer] img.base", "el => el.style.filter") == ""
        page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus ring
        assert abs(_mean_grey(stage.screenshot()) - before) < 0.5

        # ---- zoom and pan kept per image
        page.get_by_role("radio", name="Pan").check()
        page.get_by_role("button", name="Zoom in").click()
        page.get_by_role("button", name="Zoom in").click()
        zoomed = page.eval_on_selector("[data-viewer] .viewer-layer", "el => el.style.transform")
        page.locator(".thumb").nth(1).click()
        # The other image opens fitted, not at the first one's zoom.
        page.wait_for_function(
            f"() => document.querySelector('[data-viewer] .viewer-layer').style.transform !== {zoomed!r}"
        )
        page.locator(".thumb").first.click()
        page.wait_for_function(
            f"() => document.querySelector('[data-viewer] .viewer-layer').style.transform === {zoomed!r}"
        )
        page.get_by_role("button", name="Fit").click()

        # ---- a caliper on the DICOM still: millimetres from the region's PhysicalDeltaX/Y
        first_id = int(page.locator("[data-viewer] img.base").get_attribute("src").split("/")[-2])
        first = next(i for i in study["images"] if i["id"] == first_id)
        source = next(p for p in files if p.name == first["filename"])
        first_region = pydicom.dcmread(source, stop_before_pixels=True).SequenceOfUltrasoundRegions[0]
        mm_x, mm_y = float(first_region.PhysicalDeltaX) * 10, float(first_region.PhysicalDeltaY) * 10
        x0, x1 = int(first_region.RegionLocationMinX0), int(first_region.RegionLocationMaxX1)
        y0, y1 = int(first_region.RegionLocationMinY0), int(first_region.RegionLocationMaxY1)
        a = (x0 + 0.3 * (x1 - x0), y0 + 0.45 * (y1 - y0))
        b = (x0 + 0.7 * (x1 - x0), y0 + 0.55 * (y1 - y0))
        assert "Calibrated" in page.locator("[data-calibration]").inner_text()
        page.get_by_role("radio", name="Measure").check()
        page.get_by_label("Measurement", exact=True).select_option(label="Biparietal diameter (BPD)")
        for point in (a, b):
            page.mouse.click(*_image_point_to_screen(page, *point))
        live = float(page.locator("[data-biometry]").get_attribute("data-live-value"))
        expected_intended = math.hypot((b[0] - a[0]) * mm_x, (b[1] - a[1]) * mm_y)
        # A click lands on a whole screen pixel: within one screen pixel of the intended points.
        screen_px_mm = max(mm_x, mm_y) / float(
            page.eval_on_selector("[data-zoom-level]", "el => parseFloat(el.textContent) / 100")
        )
        assert live == pytest.approx(expected_intended, abs=2 * screen_px_mm)
        _shot(page, "reading-room-caliper.png", full_page=True)
        page.get_by_role("button", name="Save measurement").click()
        row = page.locator("[data-measurement-rows] tr[data-measurement-id]")
        row.wait_for()
        saved = httpx.get(f"{server.url}/api/v1/studies/{study_id}/measurements", headers=headers).json()
        assert len(saved) == 1 and saved[0]["name"] == "BPD"
        (pa, pb) = saved[0]["points"]
        # The server's value from the saved points equals the DICOM spacing computed here.
        assert saved[0]["value_mm"] == pytest.approx(
            math.hypot((pb[0] - pa[0]) * mm_x, (pb[1] - pa[1]) * mm_y), rel=1e-9
        )
        assert saved[0]["value_mm"] == pytest.approx(live, abs=1e-3)
        assert float(row.locator("[data-value-mm]").get_attribute("data-value-mm")) == pytest.approx(
            live, abs=1e-3
        )
        if study["gestational_age_weeks"]:
            assert saved[0]["z_score"] is not None
        assert unlabelled_controls(page) == []
        _shot(page, "reading-room-biometry.png", full_page=True)

        # ---- grouped by plane in acquisition order: the synthetic files name no plane; the
        # stills (series 1) come before the loop (series 2).
        page.get_by_label("Order").select_option(label="By plane, acquisition order")
        assert page.locator("[data-thumbs] .thumb-group").all_inner_texts() == ["Plane not named"]
        assert "is-loop" in (page.locator(".thumb").last.get_attribute("class") or "")

        # ---- side-by-side compare
        page.get_by_role("button", name="Compare").click()
        page.wait_for_function("() => document.querySelector('img.cmp-base').naturalWidth > 0")
        assert page.locator("[data-compare-stage]").is_visible()
        _shot(page, "reading-room-compare.png")

        # ---- the structured report: checklist, biometry, verdict, diagnosis; printable and as PDF
        page.goto(f"{server.url}/cases/{study_id}/report")
        page.get_by_label("Cavum septi pellucidi: Normal").check()
        page.get_by_label("Lateral ventricles: Abnormal").check()
        page.get_by_label("Comment").fill("Mild asymmetry of the atria.")
        page.get_by_role("button", name="Save checklist").click()
        page.wait_for_selector("[data-checklist-saved]")
        assert page.get_by_label("Cavum septi pellucidi: Normal").is_checked()
        assert "Biparietal diameter (BPD)" in page.locator("[data-report-measurements]").inner_text()
        assert unlabelled_controls(page) == []
        _shot(page, "reading-room-report.png", full_page=True)
        page.emulate_media(media="print")
        assert page.locator(".site-header").is_hidden() and page.locator("[data-print]").is_hidden()
        assert "Cavum septi pellucidi: Normal" in page.locator(".print-only").inner_text()
        page.emulate_media(media="screen")
        with page.expect_download() as download_info:
            page.get_by_role("link", name="Download PDF").click()
        data = Path(download_info.value.path()).read_bytes()
        assert data.startswith(b"%PDF")
        text = pdf_text(data)
        for words in (
            "ISUOG basic CNS examination",
            "Cavum septi pellucidi",
            "Abnormal",
            "Mild asymmetry of the atria.",
            "Biparietal diameter (BPD)",
            f"{saved[0]['value_mm']:.1f} mm",
            "AI verdict",
            "Images and heatmaps",
        ):
            assert words in text, (words, text[:2000])
        # ---- a PNG export has no calibration: said plainly, lengths in pixels, nothing saved
        png = httpx.get(f"{server.url}/api/v1/images/{first_id}/original", headers=headers).content
        response = httpx.post(
            f"{server.url}/api/v1/studies",
            files=[("files", ("export.png", png, "image/png"))],
            data={"patient_id": "PNG-EXPORT"},
            headers=headers,
            timeout=60,
        )
        assert response.status_code == 202, response.text
        page.goto(f"{server.url}/cases/{response.json()['study_id']}")
        page.wait_for_function("() => document.querySelector('img.base').naturalWidth > 0")
        assert page.locator("[data-calibration]").inner_text().startswith("No calibration")
        assert page.locator("[data-biometry]").get_attribute("data-calibrated") == "false"
        page.get_by_role("radio", name="Measure").check()
        for point in ((40, 40), (140, 90)):
            page.mouse.click(*_image_point_to_screen(page, *point))
        assert "px (no calibration)" in page.locator("[data-measure-live]").inner_text()
        assert page.get_by_role("button", name="Save measurement").is_disabled()
        _shot(page, "reading-room-no-calibration.png")
        assert errors == []
