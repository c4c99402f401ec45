"""Accessibility in headless Chromium: axe-core (vendored from npm, injected by Playwright) finds
no serious or critical violation on any page; landmarks hold all content; the case page opens at
its top at 1024×768 with the patient and the verdict in view; the diagnosis form is a few Tab
presses away; "?" opens the keyboard shortcut list.

The counts per page are written to test-artifacts/axe-counts.json before anything is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from axe_support import axe_violations, severe
from web_browser_support import (
    ARTIFACTS,
    CHROMIUM,
    chromium_page,
    live_server,
    sign_in,
    synthetic_dicom_study,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )


def _upload_through_the_page(page: Any, base: str, files: list[Path]) -> str:
    page.goto(base + "/upload")
    page.set_input_files("#files", [str(p) for p in files])
    page.get_by_role("button", name="Upload and analyse").click()
    page.wait_for_selector('[data-result-list] [data-status="done"]', timeout=120_000)
    return base + str(page.locator("[data-result-list] a.row-link").first.get_attribute("href"))


def _reader_study(page: Any, base: str, case_id: int) -> int:
    csrf = page.get_attribute('meta[name="csrf-token"]', "content")
    answer = page.request.post(
        base + "/api/v1/reader-studies",
        data=json.dumps(
            {
                "name": "axe",
                "study_ids": [case_id],
                "readers": ["admin"],
                "modes": ["unassisted"],
                "design": "sequential",
                "washout_days": 0,
                "reference": {str(case_id): "normal"},
            }
        ),
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert answer.status == 201, answer.text()
    return int(answer.json()["id"])


def test_axe_finds_no_serious_or_critical_violation_on_any_page(tmp_path: Path, tiny_model_dir: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    files = synthetic_dicom_study(tmp_path / "synthetic")
    counts: dict[str, Any] = {}
    found: dict[str, list[dict[str, Any]]] = {}

    def check(page: Any, name: str) -> None:
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        counts[name] = {
            "serious_or_critical_rules": len(severe(violations)),
            "serious_or_critical_nodes": sum(v["nodes"] for v in severe(violations)),
            "all_rules": len(violations),
            "rules": {v["id"]: f"{v['impact']}, {v['nodes']} nodes" for v in violations},
            "severe_targets": {v["id"]: v["targets"] for v in severe(violations)},
        }
        found[name] = severe(violations)

    with live_server(tmp_path / "server", tiny_model_dir) as server, chromium_page() as page:
        base = server.url
        page.goto(base + "/login")
        check(page, "login")
        sign_in(page, base, "admin")
        case_url = _upload_through_the_page(page, base, files)
        case_id = int(case_url.rsplit("/", 1)[1])
        check(page, "upload (after an upload)")
        page.goto(base + "/")
        page.wait_for_selector(f"tr[data-case-id='{case_id}']")
        check(page, "worklist")
        if page.locator("[data-shortcuts]").count():  # (absent before the list existed: "before" counts)
            page.keyboard.press("?")
            page.wait_for_selector("[data-shortcuts][open]")
            check(page, "worklist with the shortcut list open")
            page.keyboard.press("Escape")
        page.goto(case_url)
        page.wait_for_selector("[data-verdict]")
        check(page, "case")
        page.goto(base + "/cases/999999")
        check(page, "case not found")
        page.goto(base + "/account")
        check(page, "account")
        page.goto(base + "/admin/users")
        check(page, "admin users")
        page.goto(base + "/admin/audit")
        check(page, "admin audit")
        reader_study_id = _reader_study(page, base, case_id)
        page.goto(base + "/reader-studies")
        check(page, "reader studies")
        page.goto(f"{base}/reader-studies/{reader_study_id}/read")
        check(page, "reader study read")
        page.goto(f"{base}/reader-studies/{reader_study_id}/results")
        check(page, "reader study results")

    (ARTIFACTS / "axe-counts.json").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    assert {name: v for name, v in found.items() if v} == {}


def test_case_page_at_1024x768_keyboard_and_landmarks(tmp_path: Path, tiny_model_dir: Path) -> None:
    files = synthetic_dicom_study(tmp_path / "synthetic", seed=12)
    with live_server(tmp_path / "server", tiny_model_dir) as server, chromium_page((1024, 768)) as page:
        sign_in(page, server.url, "rad")
        case_url = _upload_through_the_page(page, server.url, files)
        page.goto(case_url)
        page.wait_for_selector("[data-verdict]")
        page.wait_for_function("() => document.querySelector('img.base').naturalWidth > 0")
        page.wait_for_timeout(300)
        # Opens at its top: the patient and the verdict are in view while signing.
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "case-1024x768.png"))
        assert page.evaluate("() => window.scrollY") == 0
        for selector in (".case-head dl", "#verdict-title", "[data-verdict]"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + 20 <= 768, (selector, box)

        # Every visible piece of content sits in a landmark (the model banner included).
        outside = page.evaluate(
            """() => Array.from(document.body.children)
                 .filter(el => !['HEADER', 'MAIN', 'FOOTER', 'SCRIPT', 'DIALOG'].includes(el.tagName))
                 .filter(el => !el.classList.contains('skip-link') && el.offsetParent !== null)
                 .map(el => el.outerHTML.slice(0, 80))"""
        )
        assert outside == []
        assert page.locator("main [data-model-banner]").count() == 1

        # The diagnosis form is a few Tab presses away: skip link, then the first choice.
        page.evaluate("() => { window.scrollTo(0, 0); document.activeElement.blur(); }")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.textContent") == "Skip to the diagnosis form"
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.name") == "label"  # 4 presses, not 24

        # Each thumbnail's accessible name starts with the text it shows.
        names = page.eval_on_selector_all(
            ".thumb",
            "els => els.map(b => [b.querySelector('.thumb-tag').textContent.trim(), b.textContent.trim()])",
        )
        assert names and all(full.startswith(tag) for tag, full in names)

        # "?" lists the shortcuts; Escape closes the list.
        page.locator("body").press("?")
        dialog = page.locator("[data-shortcuts]")
        assert dialog.is_visible() and "next image" in dialog.inner_text().lower()
        page.keyboard.press("Escape")
        assert not dialog.is_visible()
