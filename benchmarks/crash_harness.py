"""Crash harness: SIGKILL the real server at random points of upload and analysis, restart it, and
check that nothing acknowledged is lost, nothing is doubled, and nothing is left behind.

The server is `uvicorn app.web.app:create_app --factory` in a child process on a temporary
SQLite database and content store. A client thread uploads studies (DICOM files, and every third
upload a ZIP of them) one after another; each cycle kills the server with SIGKILL either while an
upload is in flight or while an analysis is running, then starts it again (its start-up sweep
and the worker's re-queue of interrupted analyses run). After the last kill the server runs until
every analysis has finished, and the data is checked:

- lost: an upload answered 2xx whose studies are missing or lack images;
- duplicated: a study (StudyInstanceUID) or an image stored twice, a study with two analyses;
- every analysis completed exactly once: status done, one verdict, one prediction per image;
- orphans: blobs in the content store that no row names; half-written `.incoming-*` blobs;
- leftovers: upload temp folders, and ZIP unpack folders in the server's temp folder;
- integrity: `PRAGMA integrity_check`.

The sweep runs with FETALCNS_SWEEP_GRACE_S=0: one server process, nothing else writes.

    .venv/bin/python benchmarks/crash_harness.py [--kills 20] [--seed 0] [--model-dir models/fetal-cns-demo]

Prints JSON {kills, acknowledged, lost, duplicated, orphans, integrity, ...}; exit status 1 when
anything was lost, doubled, left behind or unfinished.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT))

PASSWORD = "crash harness password"
UVICORN = [sys.executable, "-m", "uvicorn", "app.web.app:create_app", "--factory", "--host", "127.0.0.1"]
USER = "crash"
# How long answered uploads took: a kill "during an upload" lands within one such span.
DURATIONS: list[float] = []


@dataclass
class Upload:
    index: int
    study_uid: str
    n_images: int
    as_zip: bool
    outcome: str = "pending"  # acknowledged | refused | unanswered (killed mid-request) | not_sent
    study_ids: list[int] = field(default_factory=list)
    status_code: int | None = None


class Server:
    """The app in a child process; killed with SIGKILL, restarted on the same data."""

    def __init__(self, data_dir: Path, model_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.tmp_dir = data_dir / "tmp"  # the server's TMPDIR: ZIP unpack folders land here
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FETALCNS_")}
        self.env.update(
            {
                "FETALCNS_DATA_DIR": str(data_dir),
                "FETALCNS_DATABASE_URL": f"sqlite:///{(data_dir / 'fetalcns.db').as_posix()}",
                "FETALCNS_MODEL_DIR": str(model_dir),
                "FETALCNS_SECRET_KEY": "crash-harness-secret",
                "FETALCNS_INFERENCE_DEVICE": "cpu",
                "FETALCNS_INFERENCE_THREADS": "1",
                "FETALCNS_WORKER_POLL_S": "0.5",
                # The killed server's lease runs out this soon after its last heartbeat; then the
                # restarted one takes the analysis again (it no longer resets "running" at start).
                "FETALCNS_WORKER_LEASE_S": "3",
                "FETALCNS_SWEEP_GRACE_S": "0",
                "TMPDIR": str(self.tmp_dir),
            }
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def database(self) -> Path:
        return self.data_dir / "fetalcns.db"

    def start(self, timeout_s: float = 120.0) -> None:
        import httpx

        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*UVICORN, "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited at start:\n" + self.log_tail())
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not become healthy:\n" + self.log_tail())

    def kill(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return "\n".join(lines[-n:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(server: Server) -> None:
    from app.web.core.db import make_engine, make_session_factory
    from app.web.core.migrations import upgrade_database
    from app.web.services.users import create_user

    url = server.env["FETALCNS_DATABASE_URL"]
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as db:
            create_user(db, USER, PASSWORD, role="radiologist")
    finally:
        engine.dispose()


def study_payload(index: int, rng: random.Random) -> tuple[Upload, list[tuple[str, bytes]]]:
    from pydicom.uid import generate_uid
    from web_support import dicom_bytes, ultrasound_pixels

    uid = generate_uid()
    n_images = rng.randint(2, 5)
    files = [
        (
            f"s{index}-img{i}.dcm",
            dicom_bytes(ultrasound_pixels(index * 10 + i), f"CRASH-{index}", "Crash^Test", uid),
        )
        for i in range(n_images)
    ]
    as_zip = index % 3 == 2
    if as_zip:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files:
                archive.writestr(f"study{index}/{name}", data)
        files = [(f"study{index}.zip", buffer.getvalue())]
    return Upload(index, str(uid), n_images, as_zip), files


class Uploader(threading.Thread):
    """Uploads one study after another until stopped; records each answer (or its absence)."""

    def __init__(self, server: Server, token: str, uploads: list[Upload], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.server, self.token, self.uploads, self.rng = server, token, uploads, rng
        self.stop = threading.Event()
        self.in_flight = threading.Event()
        self.sent = threading.Event()

    def run(self) -> None:
        import httpx

        while not self.stop.is_set():
            upload, files = study_payload(len(self.uploads), self.rng)
            if self.stop.is_set():
                return
            self.uploads.append(upload)
            self.in_flight.set()
            self.sent.set()
            began = time.monotonic()
            try:
                response = httpx.post(
                    self.server.url + "/api/v1/studies",
                    files=[("files", (name, data, "application/octet-stream")) for name, data in files],
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=120,
                )
            except httpx.ConnectError:
                # The server was already dead: the request never reached it.
                upload.outcome = "not_sent"
                return
            except httpx.HTTPError:
                upload.outcome = "unanswered"
                return
            finally:
                self.in_flight.clear()
            upload.status_code = response.status_code
            DURATIONS.append(time.monotonic() - began)
            if 200 <= response.status_code < 300:
                upload.outcome = "acknowledged"
                upload.study_ids = [s["study_id"] for s in response.json()["studies"]]
            else:
                upload.outcome = "refused"


def login(server: Server) -> str:
    import httpx

    response = httpx.post(
        server.url + "/api/v1/auth/token", data={"username": USER, "password": PASSWORD}, timeout=60
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(database, timeout=10)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def _running_analyses(database: Path) -> int:
    try:
        return int(_query(database, "SELECT count(*) FROM analyses WHERE status = 'running'")[0][0])
    except sqlite3.Error:
        return 0


def kill_cycle(server: Server, uploads: list[Upload], rng: random.Random, during: str) -> dict[str, bool]:
    """Start the server, upload, and SIGKILL it at a random point of an upload or of an analysis."""
    server.start()
    uploader = Uploader(server, login(server), uploads, rng)
    uploader.start()
    uploader.sent.wait(30)
    if during == "upload":
        typical = sorted(DURATIONS)[len(DURATIONS) // 2] if DURATIONS else 0.5
        time.sleep(rng.uniform(0.0, typical))
    else:
        deadline = time.monotonic() + 30
        while _running_analyses(server.database) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
    hit = {"upload": uploader.in_flight.is_set(), "analysis": _running_analyses(server.database) > 0}
    server.kill()
    uploader.stop.set()
    uploader.join(150)
    return hit


def wait_for_analyses(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = _query(
            server.database, "SELECT count(*) FROM analyses WHERE status IN ('queued', 'running')"
        )
        if pending[0][0] == 0:
            return
        time.sleep(0.5)


STUDIES_SQL = """
    SELECT s.id, s.study_uid, count(i.id) FROM studies s LEFT JOIN images i ON i.study_id = s.id GROUP BY s.id
"""
DUPLICATE_IMAGES_SQL = """
    SELECT count(*) FROM (SELECT 1 FROM images GROUP BY study_id, source_sha256, frame HAVING count(*) > 1)
"""
ANALYSES_SQL = """
    SELECT a.status,
           (SELECT count(*) FROM verdicts v WHERE v.analysis_id = a.id),
           (SELECT count(*) FROM image_predictions p WHERE p.analysis_id = a.id),
           (SELECT count(*) FROM images i WHERE i.study_id = a.study_id)
    FROM analyses a
"""
STUDIES_WITH_TWO_ANALYSES_SQL = """
    SELECT count(*) FROM (SELECT study_id FROM analyses GROUP BY study_id HAVING count(*) > 1)
"""


def named_and_stored(server: Server) -> tuple[set[str], set[str]]:
    """Blob keys the rows name, and keys the content store holds."""
    from sqlalchemy.orm import Session

    from app.web.core.db import make_engine
    from app.web.core.storage import ContentStore
    from app.web.services.sweep import referenced_keys

    engine = make_engine(f"sqlite:///{server.database.as_posix()}")
    try:
        with Session(engine) as session:
            named = referenced_keys(session)
    finally:
        engine.dispose()
    return named, ContentStore(server.data_dir / "storage").all_keys()


def leftovers(server: Server) -> dict[str, int]:
    """What is lying around that no row accounts for (before a start-up sweep: what the kills left)."""
    named, stored = named_and_stored(server)
    upload_tmp = server.data_dir / "upload-tmp"
    return {
        "orphan_blobs": len(stored - named),
        "incoming_files": sum(1 for _ in (server.data_dir / "storage").glob("*/*/.incoming-*")),
        "upload_folders": len(list(upload_tmp.iterdir())) if upload_tmp.is_dir() else 0,
        "zip_folders": len(list(server.tmp_dir.glob("fetalcns-zip-*"))),
    }


def check(server: Server, uploads: list[Upload]) -> dict[str, Any]:
    """Compare what the clients were told with what the database and the store hold."""
    db = server.database
    studies = {int(i): (uid, int(n)) for i, uid, n in _query(db, STUDIES_SQL)}
    by_uid: dict[str, int] = {}
    for uid, _n in studies.values():
        by_uid[uid] = by_uid.get(uid, 0) + 1
    lost = 0
    for upload in uploads:
        if upload.outcome != "acknowledged":
            continue
        held = [studies.get(i) for i in upload.study_ids]
        if not held or any(h != (upload.study_uid, upload.n_images) for h in held):
            lost += 1
    uploaded_uids = {u.study_uid for u in uploads}
    duplicated_images = int(_query(db, DUPLICATE_IMAGES_SQL)[0][0])
    analyses = _query(db, ANALYSES_SQL)
    two_analyses = int(_query(db, STUDIES_WITH_TWO_ANALYSES_SQL)[0][0])
    named, stored = named_and_stored(server)
    left = leftovers(server)
    integrity = "; ".join(str(r[0]) for r in _query(db, "PRAGMA integrity_check"))
    return {
        "uploads": sum(u.outcome != "not_sent" for u in uploads),
        "acknowledged": sum(u.outcome == "acknowledged" for u in uploads),
        "refused": sum(u.outcome == "refused" for u in uploads),
        "unanswered": sum(u.outcome == "unanswered" for u in uploads),
        "unanswered_but_stored": sum(u.outcome == "unanswered" and u.study_uid in by_uid for u in uploads),
        "lost": lost,
        "duplicated": sum(n - 1 for n in by_uid.values() if n > 1) + duplicated_images + two_analyses,
        "unknown_studies": sum(1 for uid in by_uid if uid not in uploaded_uids),
        "analyses": {
            "total": len(analyses),
            "done_once": sum(1 for s, v, p, n in analyses if s == "done" and v == 1 and p == n),
            "not_done": sum(1 for s, _v, _p, _n in analyses if s != "done"),
            "wrong_counts": sum(1 for s, v, p, n in analyses if s == "done" and (v != 1 or p != n)),
        },
        "orphans": left["orphan_blobs"],
        "missing_blobs": len(named - stored),
        "incoming_files": left["incoming_files"],
        "leftover_upload_folders": left["upload_folders"],
        "leftover_zip_folders": left["zip_folders"],
        "integrity": integrity,
    }


def run(kills: int, seed: int, model_dir: Path, port: int, workdir: Path, settle_s: float) -> dict[str, Any]:
    rng = random.Random(seed)
    server = Server(workdir / "var", model_dir, port)
    prepare(server)
    uploads: list[Upload] = []
    hits = {"upload": 0, "analysis": 0}
    left: dict[str, int] = {}
    started = time.monotonic()
    try:
        for index in range(kills):
            during = "upload" if index % 2 == 0 else "analysis"
            hit = kill_cycle(server, uploads, rng, during)
            # Counted after each kill: the next start's sweep removes them.
            for key, value in leftovers(server).items():
                left[key] = left.get(key, 0) + value
            hits["upload"] += hit["upload"]
            hits["analysis"] += hit["analysis"]
            print(
                f"kill {index + 1}/{kills} ({during}): {hit}; {len(uploads)} uploads so far", file=sys.stderr
            )
        server.start()  # the last restart: sweep, re-queue, finish every analysis
        wait_for_analyses(server, settle_s)
    finally:
        server.stop()
    result = {
        "kills": kills,
        "kills_during_upload": hits["upload"],
        "kills_during_analysis": hits["analysis"],
        "left_by_the_kills_for_the_sweep": left,
        **check(server, uploads),
        "seconds": round(time.monotonic() - started, 1),
        "seed": seed,
    }
    return result


def failed(result: dict[str, Any]) -> bool:
    analyses = result["analyses"]
    bad = (
        "lost",
        "duplicated",
        "orphans",
        "missing_blobs",
        "incoming_files",
        "leftover_upload_folders",
        "leftover_zip_folders",
        "unknown_studies",
    )
    return (
        any(result[key] for key in bad)
        or analyses["not_done"] > 0
        or analyses["wrong_counts"] > 0
        or result["integrity"] != "ok"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models" / "fetal-cns-demo")
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    parser.add_argument(
        "--settle-s", type=float, default=600.0, help="longest wait for the analyses at the end"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the server's data here (default: a temp folder, removed)"
    )
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.kills, args.seed, args.model_dir.absolute(), args.port, args.keep, args.settle_s)
    else:
        with tempfile.TemporaryDirectory(prefix="fetalcns-crash-") as tmp:
            result = run(
                args.kills, args.seed, args.model_dir.absolute(), args.port, Path(tmp), args.settle_s
            )
    print(json.dumps(result, indent=2))
    return 1 if failed(result) else 0


if __name__ == "__main__":
    sys.exit(main())
