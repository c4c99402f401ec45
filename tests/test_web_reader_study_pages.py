"""The reader-study pages in-process: build (admin), read through all three modes (reader), results."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web_pages_support import app_client, page_settings, sign_in, upload_study


@pytest.fixture
def client(tmp_path: Path, tiny_model_dir: Path) -> Iterator[TestClient]:
    with app_client(page_settings(tmp_path / "var", tiny_model_dir)) as test_client:
        yield test_client


def test_build_read_all_modes_and_see_results(client: TestClient) -> None:
    csrf = sign_in(client, "rad")
    study_id = upload_study(client, csrf, n_images=2)
    other_id = upload_study(client, csrf, n_images=2, uid="1.2.826.0.1.3680043.8.498.2", first_seed=10)
    assert client.get("/reader-studies").status_code == 200
    assert client.post("/reader-studies", data={"csrf_token": csrf, "name": "x"}).status_code == 403
    client.post("/logout", data={"csrf_token": csrf})

    csrf = sign_in(client, "admin")
    form = {
        "csrf_token": csrf,
        "name": "Pilot <study>",
        "study_ids": f"{study_id},{other_id}",
        "readers": "rad",
        "modes": ["unassisted", "concurrent", "second-read"],
        "design": "crossover",
        "washout_days": "0",
        "show_heatmaps": "1",
        "reference_csv": f"study_id,label\n{study_id},normal\n{other_id},Anencephaly\n",
    }
    refused = client.post("/reader-studies", data={**form, "readers": "nobody"})
    assert refused.status_code == 422 and "no active user named: nobody" in refused.text
    built = client.post("/reader-studies", data=form)
    assert built.status_code == 303, built.text
    rs = int(re.search(r"/reader-studies/(\d+)/results", built.headers["location"]).group(1))
    listing = client.get("/reader-studies").text
    assert "Pilot &lt;study&gt;" in listing and "0 / 6" in listing
    client.post("/logout", data={"csrf_token": csrf})

    csrf = sign_in(client, "rad")
    assert client.get(f"/reader-studies/{rs}/results").status_code == 403
    modes_seen = []
    for _ in range(7):
        page = client.get(f"/reader-studies/{rs}/read").text
        if "answered every read" in page:
            break
        mode = re.search(r'data-mode="([^"]+)"', page).group(1)
        read_id = re.search(r'data-read="(\d+)"', page).group(1)
        modes_seen.append(mode)
        assert ("data-verdict" in page) == (mode == "concurrent")
        assert ("/heatmap" in page) == (mode == "concurrent")
        answer = {"csrf_token": csrf, "label": "normal", "confidence": "4"}
        assert client.post(f"/reader-studies/{rs}/read/{read_id}", data=answer).status_code == 303
        if mode == "second-read":
            revealed = client.get(f"/reader-studies/{rs}/read").text
            assert "data-verdict" in revealed and "/heatmap" in revealed and "Your final answer" in revealed
            assert client.post(f"/reader-studies/{rs}/read/{read_id}", data=answer).status_code == 303
    assert sorted(modes_seen) == ["concurrent"] * 2 + ["second-read"] * 2 + ["unassisted"] * 2
    client.post("/logout", data={"csrf_token": csrf})

    sign_in(client, "admin")
    results = client.get(f"/reader-studies/{rs}/results").text
    assert 'data-confusion="unassisted"' in results and 'data-confusion="AI alone"' in results
    assert "<caption>" in results and "50.0 %" in results
    # Every answer "normal": each arm's pooled ROC runs straight along the chance line's corners.
    assert 'data-plot="roc"' in results and 'data-plot="reader-accuracy"' in results
    for arm in ("unassisted", "concurrent", "second-read", "second-read-unaided"):
        assert f'<polyline data-arm="{arm}"' in results
    assert 'data-confusion="second-read, unaided first answers"' in results
