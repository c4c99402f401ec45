"""The radiologist's whole path in headless Chromium against a real uvicorn server.

Sign in, upload a synthetic DICOM study, wait for the background analysis, open
the case, use the heatmap toggle, opacity slider and zoom, sign off a
diagnosis, and find it on the worklist. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from web_browser_support import (
    ARTIFACTS,
    CHROMIUM,
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


def _opacity(page) -> float:
    return float(page.eval_on_selector("img.heat", "el => getComputedStyle(el).opacity"))


def test_upload_analyse_review_and_sign_off(tmp_path: Path, served_model_dir: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    study_files = synthetic_dicom_study(tmp_path / "synthetic")
    with live_server(tmp_path / "server", served_model_dir) as server, chromium_page() as page:
        console_errors: list[str] = []
        page.on(
            "console",
            lambda message: console_errors.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        # Everything (CSS, scripts, images) comes from the server itself: it must work offline.
        foreign: list[str] = []
        page.on(
            "request", lambda r: None if r.url.startswith((server.url, "data:")) else foreign.append(r.url)
        )

        sign_in(page, server.url, "rad")
        # The card's warning is on every page.
        assert "not for clinical use" in page.locator("[data-model-banner]").inner_text()

        page.get_by_role("link", name="Upload", exact=True).click()
        # A file that is not an image is refused with a reason, not a traceback.
        page.set_input_files(
            "#files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}]
        )
        page.get_by_role("button", name="Upload and analyse").click()
        message = page.locator("[data-upload-message]")
        message.wait_for()
        assert message.inner_text().startswith("Upload failed: none of the uploaded files could be used")
        assert "notes.txt" in message.inner_text()
        page.get_by_role("button", name="Clear").click()
        console_errors.clear()  # Chromium logs the expected 422 as a console error

        page.set_input_files("#files", [str(p) for p in study_files])
        assert page.locator("[data-file-list] li").count() == len(study_files)
        # One study: the headers' details fill the form, locked; what the files lack stays editable.
        header = pydicom.dcmread(study_files[0], stop_before_pixels=True)
        patient_id = page.get_by_label("Patient ID")
        page.wait_for_function("() => document.getElementById('patient_id').readOnly")
        assert patient_id.input_value() == header.PatientID
        study_date = str(header.StudyDate)
        assert (
            page.get_by_label("Study date").input_value()
            == f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"
        )
        assert page.get_by_label("Gestational age (weeks)").is_editable()
        page.get_by_role("button", name="Upload and analyse").click()
        page.wait_for_selector("[data-result-list] li[data-case-id]")
        # Every file's progress bar reached 100 %.
        values = page.eval_on_selector_all("[data-file-list] progress", "bars => bars.map(b => b.value)")
        assert values == [100] * len(study_files)
        # The details read from the DICOM headers are shown for the new case.
        details = "[data-result-list] [data-details]"
        page.wait_for_function(f"() => document.querySelector('{details}').textContent.includes('Patient ')")
        page.wait_for_selector('[data-result-list] [data-status="done"]', timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "upload-done.png"), full_page=True)
        assert unlabelled_controls(page) == []
        case_link = page.locator("[data-result-list] a.row-link").first
        case_url = server.url + case_link.get_attribute("href")

        page.goto(case_url)
        page.wait_for_selector("[data-verdict]")
        page.wait_for_function("() => document.querySelector('img.base').naturalWidth > 0")
        page.wait_for_function("() => document.querySelector('img.heat').naturalWidth > 0")
        # A cine clip adds one thumbnail per frame.
        assert page.locator(".thumb").count() >= len(study_files)
        assert page.locator("[data-verdict] .prob-list li").count() == 5
        page.screenshot(path=str(ARTIFACTS / "case-page.png"), full_page=True)
        assert unlabelled_controls(page) == []

        heat = page.locator("img.heat")
        toggle = page.get_by_role("checkbox", name="Heatmap")
        assert heat.is_visible() and toggle.is_checked()
        toggle.uncheck()
        assert heat.is_hidden()
        toggle.check()
        assert heat.is_visible()

        before = _opacity(page)
        page.get_by_role("slider", name="Opacity").fill("80")
        after = _opacity(page)
        assert before == pytest.approx(0.45)
        assert after == pytest.approx(0.80)
        assert page.locator("[data-opacity-out]").inner_text() == "80%"

        transform_before = page.eval_on_selector(".viewer-layer", "el => el.style.transform")
        page.get_by_role("button", name="Zoom in").click()
        transform_after = page.eval_on_selector(".viewer-layer", "el => el.style.transform")
        assert transform_before != transform_after

        stage = page.locator(".viewer-stage")
        box = stage.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -400)
        assert page.eval_on_selector(".viewer-layer", "el => el.style.transform") != transform_after
        zoomed = page.locator("[data-zoom-level]").inner_text()
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2 + 30, steps=4)
        page.mouse.up()
        assert page.locator("[data-zoom-level]").inner_text() == zoomed  # a drag pans, it does not zoom
        stage.focus()
        page.keyboard.press("h")
        assert heat.is_hidden()
        page.keyboard.press("h")
        assert heat.is_visible()
        page.keyboard.press("0")  # back to fit

        # Another thumbnail shows its own image and probabilities.
        page.locator(".thumb").nth(1).click()
        assert page.locator(".thumb").nth(1).get_attribute("aria-current") == "true"
        assert page.locator("[data-image-probs] li").count() == 5
        page.screenshot(path=str(ARTIFACTS / "case-viewer-zoomed.png"))

        ai_label = page.locator("[data-verdict] .prob-list li.top").get_attribute("data-class")
        ai_human = page.locator("[data-verdict] .verdict-label").inner_text()
        form = page.locator("[data-diagnosis-form]")
        form.locator(f"input[name=label][value='{ai_label}']").check()
        form.get_by_label("4", exact=False).first.check()
        form.get_by_label("Notes").fill("Absent cranial vault above the orbits.")
        form.get_by_role("button", name="Sign off").click()
        page.wait_for_selector("[data-form-notice]")
        history = page.locator("[data-history] li").first.inner_text()
        assert f"Final diagnosis: {ai_human}" in history
        assert "Agreed with the AI" in history
        assert "decided in" in history
        page.screenshot(path=str(ARTIFACTS / "case-signed.png"), full_page=True)

        page.get_by_role("link", name="Worklist", exact=True).click()
        case_id = case_url.rsplit("/", 1)[1]
        row = page.locator(f"tr[data-case-id='{case_id}']")
        row.wait_for()
        assert f"Reviewed: {ai_human}" in row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "worklist.png"), full_page=True)
        assert unlabelled_controls(page) == []
        page.get_by_label("Review").select_option("no")
        row.wait_for(state="detached")
        assert "No case matches these filters." in page.locator("[data-worklist] tbody").inner_text()
        page.get_by_label("Review").select_option("yes")
        row.wait_for()

        # An administrator sees the case's audit trail, including the sign-off.
        page.get_by_role("button", name="Sign out").click()
        sign_in(page, server.url, "admin")
        page.goto(f"{server.url}/admin/audit?case={case_id}")
        assert page.locator("tr[data-action='diagnosis.record']").count() == 1
        assert page.locator("tr[data-action='study.upload']").count() == 1
        page.screenshot(path=str(ARTIFACTS / "audit-case.png"), full_page=True)
        page.get_by_role("link", name="Users", exact=True).click()
        assert page.locator("tr[data-username='rad']").is_visible()
        page.screenshot(path=str(ARTIFACTS / "admin-users.png"), full_page=True)
        assert unlabelled_controls(page) == []

        assert not console_errors, console_errors
        assert not foreign, foreign
