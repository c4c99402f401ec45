"""What the verdict gate decided, as a radiologist sees it in Chromium against a real server.

A study of one synthetic scan and three photographs (which the demo model flags as out of
distribution) gets no verdict: the case page says so in its own words and colour, counts
the images used and left out, and greys the left-out images with their reason; the
worklist's verdict filter finds the study. See tests/verdict_support.py for the inputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from verdict_support import photo_like, png_file, synthetic_scans
from web_browser_support import ARTIFACTS, CHROMIUM, PASSWORD, chromium_page, live_server, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )

# Photographs are named plainly by the "not an ultrasound image" gate.
PICTURE_REASON = "not an ultrasound image (a colour picture, not a grey-scale scan)"


def upload(base_url: str, token: str, files: list[tuple[str, bytes]], name: str) -> int:
    """Upload through the JSON API and wait for the analysis; returns the study id."""
    headers = {"Authorization": f"Bearer {token}"}
    multipart = [("files", (filename, data, "image/png")) for filename, data in files]
    response = httpx.post(
        f"{base_url}/api/v1/studies",
        files=multipart,
        data={"patient_name": name, "patient_id": "P-" + name.upper()},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 202, response.text
    study_id = int(response.json()["study_id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        study = httpx.get(f"{base_url}/api/v1/studies/{study_id}", headers=headers, timeout=30).json()
        if study["status"] in ("done", "failed"):
            assert study["status"] == "done", study
            return study_id
        time.sleep(0.5)
    raise AssertionError(f"study {study_id} was not analysed in time")


def test_an_indeterminate_study_is_shown_as_such_and_found_by_the_filter(
    tmp_path: Path, demo_model_dir: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    scans = synthetic_scans(tmp_path / "synthetic")
    odd_files = [("scan.png", png_file(scans[0]))] + [
        (f"photo{seed}.png", png_file(photo_like(seed))) for seed in range(3)
    ]
    good_files = [(f"scan{i}.png", png_file(image)) for i, image in enumerate(scans)]
    with live_server(tmp_path / "server", demo_model_dir) as server, chromium_page() as page:
        token = httpx.post(
            f"{server.url}/api/v1/auth/token", data={"username": "rad", "password": PASSWORD}, timeout=30
        ).json()["access_token"]
        odd_id = upload(server.url, token, odd_files, "Odd^Folder")
        good_id = upload(server.url, token, good_files, "Good^Scans")
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(page, server.url, "rad")

        # The worklist: its own badge, never the green Normal one; the filter finds it alone.
        odd_row = page.locator(f"tr[data-case-id='{odd_id}']")
        good_row = page.locator(f"tr[data-case-id='{good_id}']")
        odd_row.wait_for()
        badge = odd_row.locator(".badge-indeterminate")
        assert badge.inner_text() == "No verdict — indeterminate"
        assert odd_row.locator(".badge-normal").count() == 0
        assert good_row.locator(".badge-normal").inner_text() == "Normal"
        page.get_by_label("AI verdict").select_option("indeterminate")
        good_row.wait_for(state="detached")
        assert odd_row.is_visible()
        page.get_by_label("AI verdict").select_option("normal")
        odd_row.wait_for(state="detached")
        assert good_row.is_visible()
        page.get_by_label("AI verdict").select_option("indeterminate")
        odd_row.wait_for()
        page.screenshot(path=str(ARTIFACTS / "worklist-indeterminate.png"), full_page=True)

        odd_row.get_by_role("link").click()
        page.wait_for_url(f"{server.url}/cases/{odd_id}")
        verdict = page.locator("[data-verdict-indeterminate]")
        assert verdict.locator(".verdict-label").inner_text() == "No verdict — indeterminate"
        assert verdict.locator(".badge-indeterminate").inner_text() == "Indeterminate"
        assert "3 of 4 images were left out" in verdict.locator("[data-verdict-reason]").inner_text()
        assert verdict.locator("[data-verdict-counts]").inner_text() == (
            "Used 1 of 4 images; 3 left out: 3 not ultrasound (another modality or a colour picture)."
        )
        assert page.locator("[data-verdict] .prob-list").count() == 0  # no probabilities to show

        # The three photographs are greyed, with their reason; the scan is not.
        excluded = page.locator(".thumb.excluded")
        assert excluded.count() == 3 and page.locator(".thumb").count() == 4
        for index in range(3):
            thumb = excluded.nth(index)
            assert thumb.get_attribute("title") == f"Left out of the verdict: {PICTURE_REASON}"
            assert "excluded" in thumb.locator(".thumb-tag").inner_text()
            assert "grayscale(1)" in thumb.locator("img").evaluate("el => getComputedStyle(el).filter")
        kept = page.locator(".thumb:not(.excluded)")
        assert (
            kept.count() == 1 and kept.locator("img").evaluate("el => getComputedStyle(el).filter") == "none"
        )
        excluded.first.click()
        note = page.locator("[data-image-excluded]")
        assert note.is_visible() and note.inner_text() == f"Left out of the verdict: {PICTURE_REASON}."
        kept.click()
        assert note.is_hidden()
        page.screenshot(path=str(ARTIFACTS / "case-indeterminate.png"), full_page=True)

        # A study the model may judge still shows its verdict and its counts.
        page.goto(f"{server.url}/cases/{good_id}")
        assert page.locator("[data-verdict] .verdict-label").inner_text() == "Normal"
        assert page.locator("[data-verdict-counts]").inner_text() == "Used 3 of 3 images."
        assert page.locator(".thumb.excluded").count() == 0
        assert not errors, errors
