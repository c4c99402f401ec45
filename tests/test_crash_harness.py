"""A short run of the crash harness (benchmarks/crash_harness.py; the 20-kill run is reported in the
note): the real server, SIGKILLed once during an upload and once during an analysis, restarted,
loses no acknowledged upload, doubles nothing, finishes every analysis once and leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_two_kills_lose_nothing_double_nothing_and_leave_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "crash_harness.py"),
            "--kills",
            "2",
            "--seed",
            "1",
            "--model-dir",
            str(tiny_model_dir),
            "--settle-s",
            "120",
            "--keep",
            str(tmp_path / "crash"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["kills"] == 2
    assert result["acknowledged"] >= 1, result
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["unknown_studies"] == 0, result
    assert result["analyses"]["not_done"] == 0 and result["analyses"]["wrong_counts"] == 0, result
    assert result["analyses"]["done_once"] == result["analyses"]["total"] >= result["acknowledged"], result
    assert result["orphans"] == 0 and result["missing_blobs"] == 0 and result["incoming_files"] == 0, result
    assert result["leftover_upload_folders"] == 0 and result["leftover_zip_folders"] == 0, result
    assert result["integrity"] == "ok"
    assert done.returncode == 0, done.stderr[-3000:]
