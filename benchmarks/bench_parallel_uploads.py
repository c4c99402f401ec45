"""Parallel uploads against a real uvicorn server; prints JSON (issue 12, "30 parallel uploads").

Every upload is one patient's DICOM study, all sent at the same instant; then, as a second
round, the same new patient's study is sent ``--same-patient`` times at once. Counts the
answers that were not 202, the analyses that did not finish "done", and the patient and study
rows (one each for the same-patient round).

    .venv/bin/python benchmarks/bench_parallel_uploads.py [--backend sqlite|postgres]
        [--uploads 60] [--images 20] [--same-patient 6] [--model-dir models/fetal-cns-demo]

PostgreSQL: a fresh database at 127.0.0.1:5432 (trust auth, user postgres), named
``--pg-prefix`` + random, dropped at the end. Without a trained model an untrained narrow one is
exported (needs torch).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _database(backend: str, root: Path, prefix: str) -> tuple[str, Any]:
    """(URL, drop function) of a fresh database."""
    if backend == "sqlite":
        return f"sqlite:///{root / 'bench.db'}", lambda: None
    import psycopg
    from web_support import PG_ADMIN_DSN

    name = f"{prefix}{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


def _send_all(url: str, auth: dict[str, str], uploads: list[list[tuple[str, bytes]]]) -> list[Any]:
    import httpx
    from web_support import multipart

    def send(files: list[tuple[str, bytes]]) -> Any:
        try:
            return httpx.post(f"{url}/api/v1/studies", files=multipart(files), headers=auth, timeout=600)
        except httpx.HTTPError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        return list(pool.map(send, uploads))


def _accepted(answers: list[Any]) -> list[int]:
    return [int(a.json()["study_id"]) for a in answers if getattr(a, "status_code", None) == 202]


def _wait(url: str, auth: dict[str, str], study_ids: set[int], timeout_s: float) -> dict[str, int]:
    import httpx

    final: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, headers=auth, timeout=60) as client:
        while len(final) < len(study_ids) and time.monotonic() < deadline:
            for study_id in study_ids - final.keys():
                status = client.get(f"/api/v1/studies/{study_id}").json()["status"]
                if status in ("done", "failed"):
                    final[study_id] = status
            time.sleep(0.5)
    done = sum(status == "done" for status in final.values())
    return {"done": done, "failed": len(final) - done, "unfinished": len(study_ids) - len(final)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--uploads", type=int, default=60)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--same-patient", type=int, default=6)
    parser.add_argument("--model-dir", type=Path, default=Path("models/fetal-cns-demo"))
    parser.add_argument("--pg-prefix", default="fetalcns_bench_")
    parser.add_argument("--timeout-s", type=float, default=1800)
    args = parser.parse_args()

    import httpx
    from sqlalchemy import func, select
    from web_browser_support import server_env, uvicorn_server
    from web_support import PASSWORD, reset_database, study_files

    from app.web.core.db import make_engine
    from app.web.core.migrations import upgrade_database
    from app.web.core.models import Patient, Study

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = args.model_dir
        if not (model_dir / "model.json").is_file():
            from app.training.export import export_untrained_demo

            model_dir = root / "model"
            export_untrained_demo(model_dir, width=0.125, seed=0)
        url, drop = _database(args.backend, root, args.pg_prefix)
        try:
            upgrade_database(url)
            reset_database(url)
            env = server_env(root / "server", model_dir, database_url=url)
            env["FETALCNS_WORKER_POLL_S"] = "0.2"
            uploads = [study_files(args.images, patient_id=f"BENCH-{i}", seed=i) for i in range(args.uploads)]
            same = study_files(3, patient_id="BENCH-SAME", seed=10_000)
            with uvicorn_server(env, root / "server") as server:
                token = httpx.post(
                    f"{server.url}/api/v1/auth/token", data={"username": "rad", "password": PASSWORD}
                ).json()["access_token"]
                auth = {"Authorization": f"Bearer {token}"}
                started = time.monotonic()
                answers = _send_all(server.url, auth, uploads)
                accept_s = time.monotonic() - started
                analyses = _wait(server.url, auth, set(_accepted(answers)), args.timeout_s)
                all_s = time.monotonic() - started
                same_answers = _send_all(server.url, auth, [same] * args.same_patient)
            engine = make_engine(url)
            with engine.connect() as connection:
                same_patients = connection.execute(
                    select(func.count()).select_from(Patient).where(Patient.patient_id == "BENCH-SAME")
                ).scalar_one()
                same_studies = connection.execute(
                    select(func.count(Study.id)).join(Patient).where(Patient.patient_id == "BENCH-SAME")
                ).scalar_one()
            engine.dispose()
        finally:
            drop()
    errors = [a.status_code if hasattr(a, "status_code") else type(a).__name__ for a in answers]
    result = {
        "backend": args.backend,
        "uploads": args.uploads,
        "images_per_upload": args.images,
        "errors": sum(e != 202 for e in errors),
        "error_statuses": sorted({str(e) for e in errors if e != 202}),
        "seconds_to_accept_all": round(accept_s, 2),
        "analyses": analyses,
        "seconds_to_analyse_all": round(all_s, 2),
        "same_patient_uploads": args.same_patient,
        "same_patient_errors": sum(getattr(a, "status_code", None) != 202 for a in same_answers),
        "same_patient_rows": {"patients": same_patients, "studies": same_studies},
    }
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["same_patient_errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
