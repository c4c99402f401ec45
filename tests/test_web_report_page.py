"""The structured report page: the ISUOG checklist form (CSRF-protected), the biometry and the
verdict on one printable page; in second-read mode it shows no AI output and no PDF link."""

from __future__ import annotations

from pathlib import Path

from web_pages_support import app_client, page_settings, sign_in, upload_study


def test_report_page_records_the_checklist(tmp_path: Path, tiny_model_dir: Path) -> None:
    with app_client(page_settings(tmp_path / "var", tiny_model_dir)) as client:
        csrf = sign_in(client, "rad")
        study_id = upload_study(client, csrf, n_images=2)
        page = client.get(f"/cases/{study_id}/report")
        assert page.status_code == 200
        html = page.text
        assert "ISUOG basic CNS examination" in html and "Cavum septi pellucidi" in html
        assert f"/api/v1/studies/{study_id}/report.pdf" in html and "data-report-verdict" in html
        assert "No measurements were recorded" in html
        form = {"item_cavum_septi_pellucidi": "normal", "item_spine": "not_seen", "item_thalami": "bogus"}
        # Without the CSRF token the form is refused, and nothing is recorded.
        assert client.post(f"/cases/{study_id}/report/checklist", data=form).status_code == 403
        saved = client.post(
            f"/cases/{study_id}/report/checklist", data={**form, "comment": "ok", "csrf_token": csrf}
        )
        assert saved.status_code == 303 and saved.headers["location"].endswith("saved=checklist")
        items = client.get(f"/api/v1/studies/{study_id}/checklist", headers={"X-CSRF-Token": csrf}).json()
        answers = {item["key"]: item["answer"] for item in items["items"]}
        assert answers["cavum_septi_pellucidi"] == "normal" and answers["spine"] == "not_seen"
        assert answers["thalami"] is None  # an unknown answer is not recorded
        assert items["comment"] == "ok" and items["recorded_by"] == "rad"
        again = client.get(f"/cases/{study_id}/report?saved=checklist").text
        assert "Checklist saved." in again
        assert client.get("/cases/999999/report").status_code == 404


def test_report_page_withholds_the_ai_in_second_read_mode(tmp_path: Path, tiny_model_dir: Path) -> None:
    with app_client(page_settings(tmp_path / "var", tiny_model_dir, assistance_mode="second-read")) as client:
        csrf = sign_in(client, "rad")
        study_id = upload_study(client, csrf, n_images=2)
        html = client.get(f"/cases/{study_id}/report").text
        assert "Second-read mode" in html and "data-report-verdict" not in html
        assert "/heatmap" not in html and "report.pdf" not in html
