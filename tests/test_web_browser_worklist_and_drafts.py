"""The reading room in headless Chromium against a real uvicorn server: the worklist past 500
cases (pages, search, filters in the address with Back and bookmarks, new cases appearing on
their own), a read that survives a server-side refusal and an expired session, and a re-upload
that points at the stored case while an oversize file is shown as skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reading_room_support import seed_cases
from sqlalchemy import delete
from web_browser_support import (
    ARTIFACTS,
    CHROMIUM,
    PASSWORD,
    chromium_page,
    live_server,
    sign_in,
    synthetic_dicom_study,
)

from app.web.core.db import make_engine
from app.web.core.models import UserSession

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )


def _engine(server: Any) -> Any:
    return make_engine(f"sqlite:///{(server.data_dir / 'fetalcns.db').as_posix()}")


def test_worklist_pages_past_500_cases_with_filters_in_the_address(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with live_server(tmp_path / "server", tiny_model_dir) as server, chromium_page() as page:
        engine = _engine(server)
        try:
            ids = seed_cases(engine, 520)
            sign_in(page, server.url, "rad")
            count = page.locator("[data-count]")
            assert count.inner_text() == "1–50 of 520 cases"
            assert page.locator("[data-worklist] tbody tr").count() == 50
            # The suspicion order puts "no verdict" above normal, with its own badge.
            badges = page.eval_on_selector_all(
                "tbody [data-verdict]", "els => els.map(e => e.dataset.verdict)"
            )
            assert (
                "normal" not in badges[: badges.index("indeterminate")] if "indeterminate" in badges else True
            )

            # Past case 500: the newest case is found by search, and the filter is in the address.
            page.get_by_label("Patient or case").fill("BULK-00520")
            page.wait_for_url("**/?q=BULK-00520**")
            page.wait_for_selector(f"tr[data-case-id='{ids[-1]}']")
            assert count.inner_text() == "1–1 of 1 case"
            page.get_by_label("Review").select_option("no")
            page.wait_for_url("**reviewed=no**")
            page.wait_for_selector(f"tr[data-case-id='{ids[-1]}']")

            # Back restores the earlier filter, and shows the list it names.
            page.go_back()
            page.wait_for_function("() => !location.search.includes('reviewed')")
            assert page.get_by_label("Review").input_value() == ""
            assert page.get_by_label("Patient or case").input_value() == "BULK-00520"
            page.go_back()
            page.wait_for_function("() => !location.search.includes('q=')")
            page.wait_for_function(
                "() => document.querySelector('[data-count]').textContent.includes('of 520')"
            )
            assert page.get_by_label("Patient or case").input_value() == ""

            # Pages: the last one holds cases 501-520 of the order.
            for number in range(2, 12):
                page.locator("[data-page-next]").click()
                first = (number - 1) * 50 + 1
                page.wait_for_function(
                    f"() => document.querySelector('[data-count]').textContent.startsWith('{first}–')"
                )
            assert count.inner_text() == "501–520 of 520 cases"
            assert "page=11" in page.url and page.locator("[data-worklist] tbody tr").count() == 20
            assert page.locator("[data-page-next]").is_hidden()

            # A bookmark opens the same list.
            bookmark = server.url + "/?verdict=indeterminate&sort=date&dir=desc&page=2"
            page.goto(bookmark)
            assert page.get_by_label("AI verdict").input_value() == "indeterminate"
            expected = sum(1 for n in range(1, 521) if n % 7 == 0)
            assert count.inner_text() == f"51–{expected} of {expected} cases"
            badges = page.eval_on_selector_all(
                "tbody [data-verdict]", "els => els.map(e => e.dataset.verdict)"
            )
            assert set(badges) == {"indeterminate"}
            assert page.locator("tbody .badge-normal").count() == 0

            # New cases appear without a reload.
            page.goto(server.url + "/?sort=id&dir=desc")
            new_ids = seed_cases(engine, 2, prefix="LATE")
            page.wait_for_selector(f"tr[data-case-id='{new_ids[-1]}']", timeout=30_000)
            assert "2 new cases" in page.locator("[data-live]").inner_text()
            page.screenshot(path=str(ARTIFACTS / "worklist-paged.png"), full_page=True)
        finally:
            engine.dispose()


def _fill_read(page: Any, label: str, notes: str) -> None:
    form = page.locator("[data-diagnosis-form]")
    form.locator(f"input[name=label][value='{label}']").check()
    form.locator("input[name=confidence][value='4']").check()
    form.get_by_label("Notes").fill(notes)


def test_a_read_survives_a_refusal_and_an_expired_session(tmp_path: Path, tiny_model_dir: Path) -> None:
    files = synthetic_dicom_study(tmp_path / "synthetic", seed=21)
    users = {"rad": "radiologist", "rad2": "radiologist", "admin": "admin"}
    with live_server(tmp_path / "server", tiny_model_dir, users=users) as server, chromium_page() as page:
        sign_in(page, server.url, "rad")
        page.goto(server.url + "/upload")
        page.set_input_files("#files", [str(p) for p in files])
        page.get_by_role("button", name="Upload and analyse").click()
        page.wait_for_selector('[data-result-list] [data-status="done"]', timeout=120_000)
        case_url = server.url + str(page.locator("[data-result-list] a.row-link").first.get_attribute("href"))
        case_id = case_url.rsplit("/", 1)[1]

        page.goto(case_url)
        page.wait_for_selector("[data-verdict]")
        ai_label = page.locator("[data-verdict] .prob-list li.top").get_attribute("data-class")
        other = "normal" if ai_label != "normal" else "Anencephaly"
        _fill_read(page, other, "Absent cavum septi pellucidi.")
        # Agreement follows from the class chosen.
        assert page.locator("[data-agreement]").get_attribute("data-agrees") == "no"

        # Meanwhile another reader signs the case: the server refuses this read (409) ...
        token = page.request.post(
            server.url + "/api/v1/auth/token", form={"username": "rad2", "password": PASSWORD}
        ).json()["access_token"]
        signed = page.request.post(
            f"{server.url}/api/v1/studies/{case_id}/diagnosis",
            data=json.dumps({"label": ai_label}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert signed.status == 201
        page.get_by_role("button", name="Sign off").click()
        page.wait_for_selector("[data-form-error]")
        assert "rad2 signed this case" in page.locator("[data-form-error]").inner_text().lower()
        # ... and the page comes back with everything typed still there.
        form = page.locator("[data-diagnosis-form]")
        assert form.locator(f"input[name=label][value='{other}']").is_checked()
        assert form.locator("input[name=confidence][value='4']").is_checked()
        assert form.get_by_label("Notes").input_value() == "Absent cavum septi pellucidi."

        # The case is now signed: an amendment is typed, then the session ends mid-read.
        page.goto(case_url)
        form.get_by_label("Reason for the amendment").wait_for()
        _fill_read(page, other, "Second look: septum absent.")
        form.get_by_label("Reason for the amendment").fill("Septum pellucidum not seen on review.")
        engine = _engine(server)
        try:
            with engine.begin() as connection:
                connection.execute(delete(UserSession))
        finally:
            engine.dispose()
        page.get_by_role("button", name="Record amendment").click()
        page.wait_for_url("**/login?next=**")
        assert "Method Not Allowed" not in page.content()
        page.get_by_label("User name").fill("rad")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        # Back on the case, the read filled in again from this browser's draft.
        page.wait_for_url(f"**/cases/{case_id}?done=draft")
        page.wait_for_selector("[data-draft-note]:not([hidden])")
        form = page.locator("[data-diagnosis-form]")
        assert form.locator(f"input[name=label][value='{other}']").is_checked()
        assert form.get_by_label("Notes").input_value() == "Second look: septum absent."
        assert (
            form.get_by_label("Reason for the amendment").input_value()
            == "Septum pellucidum not seen on review."
        )
        page.get_by_role("button", name="Record amendment").click()
        page.wait_for_selector("[data-form-notice]")
        assert "Amendment recorded." in page.locator("[data-form-notice]").inner_text()
        # Recorded: the draft is gone.
        assert (
            page.evaluate("() => Object.keys(localStorage).filter(k => k.startsWith('fetalcns.draft'))") == []
        )


def test_a_reupload_points_at_the_stored_case_and_an_oversize_file_is_skipped(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    files = synthetic_dicom_study(tmp_path / "synthetic", seed=31)
    limit = max(p.stat().st_size for p in files) + 1000  # every study file fits, the next one not
    big = tmp_path / "too-big.dcm"
    big.write_bytes(b"\0" * (limit + 1))
    limits = {"FETALCNS_MAX_FILE_BYTES": str(limit)}
    with (
        live_server(tmp_path / "server", tiny_model_dir, extra_env=limits) as server,
        chromium_page() as page,
    ):
        sign_in(page, server.url, "rad")
        page.goto(server.url + "/upload")
        page.set_input_files("#files", [str(p) for p in files])
        page.get_by_role("button", name="Upload and analyse").click()
        page.wait_for_selector("[data-result-list] li[data-case-id]")
        first_id = page.locator("[data-result-list] li[data-case-id]").first.get_attribute("data-case-id")

        page.goto(server.url + "/upload")
        page.set_input_files("#files", [*(str(p) for p in files), str(big)])
        page.get_by_role("button", name="Upload and analyse").click()
        page.wait_for_selector("[data-result-list] li[data-case-id]")
        item = page.locator("[data-result-list] li[data-case-id]").first
        assert item.get_attribute("data-case-id") == first_id
        assert item.locator("[data-duplicate]").is_visible()
        assert "no duplicate was made" in page.locator("[data-upload-message]").inner_text()
        # The oversize file alone is refused, and shows as skipped, not as a green bar.
        skipped = page.locator("[data-file-list] li[data-skipped]")
        assert skipped.count() == 1 and "too-big.dcm" in skipped.inner_text()
        assert "Skipped" in skipped.inner_text()
        assert "done" not in (skipped.locator("progress").get_attribute("class") or "")
        assert page.locator("[data-file-list] li:not([data-skipped]) progress.done").count() == len(files)
        assert "larger than the limit" in page.locator("[data-result-list]").inner_text()
        page.screenshot(path=str(ARTIFACTS / "upload-duplicate.png"), full_page=True)
