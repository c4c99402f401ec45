"""GET /metrics of `fetalcns serve --workers 2` sums both processes (issue 13): prometheus_client's
multiprocess mode, in a directory emptied when the run starts; a process that stops leaves the
live sums. Real server processes on PostgreSQL, scraped over HTTP like Prometheus would."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from test_web_multiprocess import _children, _env, _free_port, _serve, _wait_healthy
from web_support import PASSWORD, multipart, new_database, reset_database, study_files

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _value(body: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", body, re.MULTILINE)
    assert match, f"{name} is not in the scrape"
    return float(match.group(1))


def _scrape(base: str) -> str:
    # A new connection each time, so that the scrapes reach either process.
    with httpx.Client(timeout=30) as client:
        answer = client.get(f"{base}/metrics")
    assert answer.status_code == 200, answer.text[:500]
    return answer.text


def test_metrics_of_several_processes_are_summed(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    demo_model_dir: Path,
) -> None:
    db_url = new_database("postgres", tmp_path_factory, request.config)
    reset_database(db_url)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # What a previous run left: not a readable metrics file, so a scrape would fail on it.
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")
    env = _env(tmp_path / "var", db_url, demo_model_dir)
    env.update(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), FETALCNS_WORKER_POLL_S="0.3")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(env, port, "--workers", "2")
    try:
        _wait_healthy(server, port)
        assert not (metrics_dir / "counter_1.db").exists()
        # Each process counts itself once its app has started (the health check above saw one).
        deadline = time.monotonic() + 90
        while _value(_scrape(base), "fetalcns_web_processes") < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        for _ in range(6):
            assert _value(_scrape(base), "fetalcns_web_processes") == 2.0
        assert len(list(metrics_dir.glob("gauge_livesum_*.db"))) == 2

        token = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "rad", "password": PASSWORD}, timeout=30
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        sizes = (1, 2, 3)
        ids = []
        for seed, n in enumerate(sizes):
            files = multipart(study_files(n, patient_id=f"PID-MP-{seed}", seed=seed * 10))
            ids.append(
                httpx.post(f"{base}/api/v1/studies", files=files, headers=auth, timeout=60).json()["study_id"]
            )
        deadline = time.monotonic() + 240
        for study_id in ids:
            while (
                httpx.get(f"{base}/api/v1/studies/{study_id}", headers=auth, timeout=30).json()["status"]
                not in ("done", "failed")
                and time.monotonic() < deadline
            ):
                time.sleep(0.3)
        # Whichever process analysed which study, and whichever answers the scrape: the totals.
        for _ in range(6):
            body = _scrape(base)
            assert _value(body, "fetalcns_images_analysed_total") == sum(sizes)
            assert _value(body, 'fetalcns_analyses_finished_total{outcome="done"}') == len(sizes)
            assert _value(body, "fetalcns_analysis_duration_seconds_count") == len(sizes)
            assert _value(body, 'fetalcns_analyses{status="done"}') == len(sizes)
        processes = _children(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    # Each process marked itself dead as it stopped: no live gauge is left to be summed.
    assert len(processes) >= 2
    assert list(metrics_dir.glob("gauge_livesum_*.db")) == []
    # The counts stay (a counter's total includes stopped processes), in the operator's directory.
    assert list(metrics_dir.glob("counter_*.db"))
