"""The web app serves the bundled model without torch, like `fetalcns predict` (see test_inference_engine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
from ingest_support import phantom

REPO_ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: this test process has long imported torch for other tests.
SCRIPT = """
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.web.app import create_app
from app.web.core.migrations import upgrade_database
from app.web.services.users import create_user
from app.web.settings import Settings

var, model_dir, png = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
settings = Settings(
    data_dir=var,
    database_url=f"sqlite:///{(var / 'web.db').as_posix()}",
    storage_dir=var / "storage",
    model_dir=model_dir,
    secret_key="test-secret",
    inference_device="cpu",
    inference_threads=1,
    worker_poll_s=0.2,
)
upgrade_database(settings.resolved_database_url)
app = create_app(settings)
with TestClient(app) as client:
    with app.state.runtime.session_factory() as db:
        create_user(db, "rad", "correct horse battery")
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["worker"] == "running", health
    assert client.get("/login").status_code == 200
    token = client.post("/api/v1/auth/token", data={"username": "rad", "password": "correct horse battery"})
    auth = {"Authorization": "Bearer " + token.json()["access_token"]}
    upload = client.post(
        "/api/v1/studies",
        files=[("files", ("scan.png", png.read_bytes(), "image/png"))],
        data={"patient_id": "P-NO-TORCH"},
        headers=auth,
    )
    assert upload.status_code == 202, upload.text
    study_id = upload.json()["study_id"]
    deadline = time.monotonic() + 90
    while (study := client.get(f"/api/v1/studies/{study_id}", headers=auth).json())["status"] not in (
        "done",
        "failed",
    ):
        assert time.monotonic() < deadline, study
        time.sleep(0.2)
    assert study["status"] == "done" and study["verdict"] is not None, study
    heatmap = client.get(study["images"][0]["heatmap_url"], headers=auth)
    assert heatmap.status_code == 200 and heatmap.headers["content-type"] == "image/png"
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "torch" or m.startswith("app.training"))
assert not heavy, heavy
"""


def test_the_web_app_analyses_an_upload_without_importing_torch(demo_model_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), phantom(seed=3))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "var"), str(demo_model_dir), str(png)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
