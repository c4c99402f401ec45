"""A short seeded run of the ingestion fuzz harness (tests/fuzz_support.py; the 100,000-input run is
benchmarks/fuzz_ingest.py), and fuzzed files through the real upload API on SQLite and PostgreSQL:
an answer of 202 or a 4xx with a reason, never a 5xx, and a refused upload leaves no row and no blob."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import FuzzInput, check_ingestion, fuzz_inputs, seeds
from hypothesis import HealthCheck, given, settings
from web_support import db_url, web  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
SEEDED = settings(
    max_examples=300,
    derandomize=True,  # the same inputs on every run and machine
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_fuzzed_files_are_imported_or_rejected_and_nothing_is_left(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    workdir = tmp_path_factory.mktemp("fuzz")

    @SEEDED
    @given(fuzz_inputs())
    def prop(item: FuzzInput) -> None:
        problems, _n_images = check_ingestion(item, workdir)
        assert not problems, f"{item.describe()}: {problems}"

    prop()


def test_the_fuzz_script_prints_its_counts() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "fuzz_ingest.py"), "--inputs", "40", "--chunk", "25"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["inputs"] == 40 and result["failures"] == 0
    assert result["imported"] + result["rejected"] == 40 and result["seconds"] > 0


def test_fuzzed_uploads_answer_clearly_and_leave_nothing_half_written(web: Any) -> None:  # noqa: F811
    harness = web(worker_enabled=False)
    headers = harness.auth()
    upload_tmp = harness.settings.upload_tmp_dir
    seen: dict[int, int] = {}

    def upload_and_check(item: FuzzInput) -> int:
        before, keys_before = harness.counts(), harness.stored_keys()
        response = harness.client.post(
            "/api/v1/studies",
            files=[("files", (item.filename, item.data, "application/octet-stream"))],
            headers=headers,
        )
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code in (202, 413, 422), (
            f"{item.describe()}: {response.status_code} {response.text[:300]}"
        )
        after = harness.counts()
        if response.status_code == 202:
            body = response.json()
            assert after["studies"] == before["studies"] + len(body["studies"])
            assert after["images"] == before["images"] + sum(s["n_images"] for s in body["studies"])
        else:
            assert response.json()["detail"].strip()
            assert after == before and harness.stored_keys() == keys_before
        assert not upload_tmp.exists() or not list(upload_tmp.iterdir())
        return response.status_code

    # Fixed controls, so that both branches of the property are exercised whatever the
    # fuzzer happens to draw (which of its inputs survive depends on hypothesis internals).
    by_name = {seed.name: seed for seed in seeds()[0]}
    control_ok = FuzzInput("control.dcm", by_name["us_grey.dcm"].data, "dicom", [])
    control_bad = FuzzInput("control.png", by_name["grey.png"].data, "raster", [])  # no patient ID
    assert upload_and_check(control_ok) == 202
    assert upload_and_check(control_bad) == 422

    @settings(SEEDED, max_examples=25)
    @given(fuzz_inputs())
    def prop(item: FuzzInput) -> None:
        upload_and_check(item)

    prop()
    assert sum(seen.values()) >= 27, seen
