"""The strict Content-Security-Policy holds on every page, in Chromium against a real server.

The policy (app.web.core.headers) allows no inline script or style, so a template with a
``style="..."`` attribute or a script that sets one is refused by the browser: the page
breaks silently. This walks every main page (and uses the case page's controls, which draw
with script) and asserts the browser reported no violation. A deliberate violation first
proves the listener hears one.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_browser_support import CHROMIUM, PASSWORD, chromium_page, live_server, sign_in
from web_support import study_files

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )

# Runs in every document before its own scripts; reports each violation to the test.
LISTEN_JS = """document.addEventListener('securitypolicyviolation', (e) => {
  window.cspViolation(location.pathname + ': ' + e.violatedDirective
                      + ' blocked ' + (e.blockedURI || 'inline')
                      + (e.sourceFile ? ' at ' + e.sourceFile + ':' + e.lineNumber : ''));
});"""


def _analysed_study(base_url: str) -> int:
    token = httpx.post(
        f"{base_url}/api/v1/auth/token", data={"username": "rad", "password": PASSWORD}, timeout=30
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    files = [("files", (name, data, "application/dicom")) for name, data in study_files(3)]
    response = httpx.post(f"{base_url}/api/v1/studies", files=files, headers=headers, timeout=60)
    assert response.status_code == 202, response.text
    study_id = int(response.json()["study_id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        study = httpx.get(f"{base_url}/api/v1/studies/{study_id}", headers=headers, timeout=30).json()
        if study["status"] == "done":
            return study_id
        assert study["status"] != "failed", study
        time.sleep(0.5)
    raise AssertionError(f"study {study_id} was not analysed in time")


def _page_paths(study_id: int) -> list[str]:
    """Every HTML page's GET route, with real ids (the app's own route table)."""
    import tempfile

    from web_pages_support import all_routes

    from app.web.app import create_app
    from app.web.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp), secret_key="x"), load_model=False)
    skip = ("/api/", "/dicomweb/", "/health", "/docs", "/redoc", "/openapi.json", "/static")
    paths = [
        re.sub(r"\{[^}]+\}", str(study_id), path)
        for path, methods in all_routes(app.routes)
        # Not the status polls, nor downloads (the audit CSV): no page to check there.
        if "GET" in methods and not path.startswith(skip) and not path.endswith(("/status", ".csv"))
    ]
    assert len(paths) >= 6, paths
    return paths


def _listen(page: Any) -> list[str]:
    violations: list[str] = []
    page.expose_function("cspViolation", lambda text: violations.append(text))
    page.add_init_script(LISTEN_JS)
    # Chromium also logs each refusal on the console ("Refused to apply inline style ...").
    page.on(
        "console",
        lambda m: violations.append(f"console: {m.text}") if "Content Security Policy" in m.text else None,
    )
    return violations


def test_no_page_violates_the_content_security_policy(tmp_path: Path, tiny_model_dir: Path) -> None:
    with live_server(tmp_path / "server", tiny_model_dir) as server, chromium_page() as page:
        study_id = _analysed_study(server.url)
        violations = _listen(page)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        page.goto(server.url + "/login")
        # The listener hears a violation: an inline style set by a script is refused.
        page.evaluate("() => document.body.setAttribute('style', 'color: red')")
        deadline = time.monotonic() + 5
        while not violations and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert any("style-src" in v for v in violations), violations
        assert page.evaluate("() => getComputedStyle(document.body).color") != "rgb(255, 0, 0)"
        violations.clear()

        page.reload()
        sign_in(page, server.url, "rad")  # the worklist
        page.wait_for_selector(f"tr[data-case-id='{study_id}']")
        page.get_by_label("Review").select_option("no")  # the list redraws with script

        page.goto(f"{server.url}/cases/{study_id}")
        page.wait_for_selector("[data-verdict] .prob-list li")
        page.wait_for_function("() => document.querySelector('img.base').naturalWidth > 0")
        page.wait_for_function("() => document.querySelector('img.heat').naturalWidth > 0")
        page.locator(".thumb").nth(1).click()
        assert page.locator("[data-image-probs] li").count() == 5
        # Bars drawn by the server and by the script have their width without inline styles.
        widths = page.eval_on_selector_all(
            ".prob-fill", "els => els.map(e => e.getBoundingClientRect().width)"
        )
        assert len(widths) == 10 and any(w > 0 for w in widths), widths
        page.get_by_role("slider", name="Opacity").fill("80")
        page.get_by_role("button", name="Zoom in").click()

        page.goto(server.url + "/upload")
        dicoms = [{"name": n, "mimeType": "application/dicom", "buffer": d} for n, d in study_files(2)]
        page.set_input_files("#files", files=dicoms)
        page.wait_for_function("() => document.getElementById('patient_id').readOnly")
        page.goto(server.url + "/cases/999999")  # the HTML error page

        page.get_by_role("button", name="Sign out").click()
        sign_in(page, server.url, "admin")
        for path in ("/admin/users", "/admin/audit", f"/admin/audit?case={study_id}"):
            page.goto(server.url + path)
            page.wait_for_selector("table")
        # And every other page the app has (a page added later is walked too).
        for path in _page_paths(study_id):
            page.goto(server.url + path)
            page.wait_for_load_state("load")

        page.goto(server.url + "/docs")
        page.wait_for_selector(".opblock-summary-path")
        page.goto(server.url + "/redoc")
        page.wait_for_selector("[data-section-id^='tag/studies/operation/']")

        assert violations == []
        assert errors == []
