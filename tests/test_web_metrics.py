"""GET /metrics (issue 13): Prometheus text with fetalcns_* metrics from the database and from
this process's worker, for this host or a bearer token only, and never a patient value."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from web_support import db_url, study_files, web  # noqa: F401

pytestmark = pytest.mark.slow

LOCAL = ("127.0.0.1", 40000)
REMOTE = ("10.20.30.40", 40000)


def _value(body: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_analyses_images_and_name_the_model(web, db_url: str) -> None:  # noqa: F811
    h = web()
    scraper = TestClient(h.app, client=LOCAL)
    before = scraper.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    images_before = _value(before.text, "fetalcns_images_analysed_total")
    done_before = _value(before.text, 'fetalcns_analyses_finished_total{outcome="done"}')
    durations_before = _value(before.text, "fetalcns_analysis_duration_seconds_count")
    batches_before = _value(before.text, "fetalcns_model_batches_total")

    study_id = h.upload(study_files(3, patient_id="PID-METRICS-1", name="Secret^Name")).json()["study_id"]
    assert h.wait_for(study_id)["status"] == "done"
    body = scraper.get("/metrics").text
    assert _value(body, 'fetalcns_analyses{status="done"}') == 1.0
    assert _value(body, 'fetalcns_analyses{status="queued"}') == 0.0
    assert _value(body, "fetalcns_analyses_lease_expired") == 0.0
    assert _value(body, "fetalcns_images_analysed_total") == images_before + 3
    assert _value(body, 'fetalcns_analyses_finished_total{outcome="done"}') == done_before + 1
    assert _value(body, "fetalcns_analysis_duration_seconds_count") == durations_before + 1
    # Three small images fit one model batch (the default inference batch is 16).
    assert _value(body, "fetalcns_model_batches_total") == batches_before + 1
    card = h.runtime.model_card
    labels = f'name="{card.name}",provider="CPUExecutionProvider",version="{card.version}"'
    assert f"fetalcns_model_info{{{labels}}} 1.0" in body
    assert "PID-METRICS-1" not in body and "Secret" not in body
    assert all(line.startswith(("#", "fetalcns_")) for line in body.splitlines() if line)


def test_metrics_are_hidden_from_other_hosts_without_the_token(web, db_url: str) -> None:  # noqa: F811
    h = web(worker_enabled=False, metrics_token="scrape-secret-123")
    remote = TestClient(h.app, client=REMOTE)
    assert remote.get("/metrics").status_code == 404
    assert remote.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert remote.get("/metrics", headers=h.auth("admin")).status_code == 404  # a user's token is not it
    allowed = remote.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
    assert allowed.status_code == 200 and "fetalcns_analyses" in allowed.text
    assert "/metrics" not in h.client.get("/openapi.json").json()["paths"]
    without_token = web(worker_enabled=False)
    assert TestClient(without_token.app, client=REMOTE).get("/metrics").status_code == 404
