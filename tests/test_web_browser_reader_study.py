"""A reader works through all three modes in Chromium against a real server, and no AI field
(verdict, per-image AI label, heatmap) reaches the page or the network before the mode allows."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from web_browser_support import CHROMIUM, PASSWORD, chromium_page, live_server, sign_in, unlabelled_controls
from web_support import multipart, study_files

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )

N_CASES = 3


def _token(url: str, username: str) -> dict[str, str]:
    response = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": username, "password": PASSWORD}, timeout=30
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _analysed_cases(url: str, headers: dict[str, str]) -> list[int]:
    ids = []
    for i in range(N_CASES):
        files = multipart(study_files(2, patient_id=f"BR-{i}", seed=7 * i))
        response = httpx.post(f"{url}/api/v1/studies", files=files, headers=headers, timeout=60)
        assert response.status_code == 202, response.text
        ids.append(int(response.json()["study_id"]))
    deadline = time.monotonic() + 120
    for study_id in ids:
        while (
            httpx.get(f"{url}/api/v1/studies/{study_id}", headers=headers, timeout=30).json()["status"]
            != "done"
        ):
            assert time.monotonic() < deadline, "not analysed in time"
            time.sleep(0.3)
    return ids


def test_a_reader_reads_all_three_modes_in_the_browser_blinded_until_allowed(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    with live_server(tmp_path / "server", tiny_model_dir) as server, chromium_page() as page:
        admin = _token(server.url, "admin")
        study_ids = _analysed_cases(server.url, admin)
        body = {
            "name": "Browser pilot",
            "study_ids": study_ids,
            "readers": ["rad"],
            "modes": ["unassisted", "concurrent", "second-read"],
            "design": "crossover",
            "reference": {str(s): "normal" for s in study_ids},
        }
        created = httpx.post(f"{server.url}/api/v1/reader-studies", json=body, headers=admin, timeout=30)
        assert created.status_code == 201, created.text
        rs = created.json()["id"]

        heatmap_requests: list[str] = []
        page.on(
            "request",
            lambda request: heatmap_requests.append(request.url) if "/heatmap" in request.url else None,
        )
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(page, server.url, "rad")
        page.get_by_role("link", name="Reader studies").click()
        # Heatmap requests seen before the navigation that loads each reading page.
        mark = len(heatmap_requests)
        page.get_by_role("link", name="Read Browser pilot").click()

        modes: list[str] = []
        started = time.monotonic()
        while page.locator("[data-read]").count():
            section = page.locator("[data-read]")
            mode = section.get_attribute("data-mode")
            modes.append(mode)
            aided = mode == "concurrent"
            page.wait_for_load_state("networkidle")
            before = mark
            assert (page.locator("[data-verdict]").count() == 1) is aided, mode
            assert ("AI:" in page.content()) is aided
            assert (len(heatmap_requests) > before) is aided
            assert unlabelled_controls(page) == []
            page.get_by_label("Normal").check()
            page.locator("input[name=confidence][value='4']").check()
            mark = len(heatmap_requests)
            page.get_by_role("button", name="Submit").click()
            page.wait_for_load_state("networkidle")
            if mode == "second-read":
                before = mark
                # Revealed only now, on the same read, asking for the final answer.
                assert page.locator("[data-verdict]").count() == 1
                assert page.get_by_text("Your final answer").count() == 1
                assert len(heatmap_requests) > before
                page.get_by_label("Normal").check()
                page.locator("input[name=confidence][value='5']").check()
                mark = len(heatmap_requests)
                page.get_by_role("button", name="Submit").click()
                page.wait_for_load_state("networkidle")
        elapsed = time.monotonic() - started
        assert page.get_by_text("You have answered every read of this study").count() == 1
        assert sorted(modes) == sorted(["unassisted", "concurrent", "second-read"] * N_CASES)
        assert errors == []
        print(f"browser: {len(modes)} reads in {elapsed:.1f} s ({elapsed / len(modes):.2f} s per read)")

        export = httpx.get(f"{server.url}/api/v1/reader-studies/{rs}/reads", headers=admin, timeout=30).json()
        second = [r for r in export if r["mode"] == "second-read"]
        assert all(r["first_confidence"] == 4 and r["confidence"] == 5 for r in second)
        assert all(r["read_time_s"] is not None for r in export)
