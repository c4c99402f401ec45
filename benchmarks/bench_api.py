"""Web API timings: upload → 202, upload → analysis done, worklist and case page latency.

Runs the real app in-process (TestClient) on a temporary SQLite database.

    .venv/bin/python benchmarks/bench_api.py [--model-dir models/fetal-cns-demo] [--studies 20] [--images 5]

Without a trained model it exports an untrained narrow one (needs torch), which has the
same cost per image as any model of that width, not of the real one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms (n={len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models/fetal-cns-demo"))
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from web_support import PASSWORD, multipart, study_files

    from app.web.app import create_app
    from app.web.core.db import make_engine, make_session_factory
    from app.web.core.migrations import upgrade_database
    from app.web.services.users import create_user
    from app.web.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = args.model_dir
        if not (model_dir / "model.json").is_file():
            from app.training.export import export_untrained_demo

            model_dir = root / "model"
            export_untrained_demo(model_dir, width=0.125, seed=0)
            print(f"no model at {args.model_dir}; using an untrained width-0.125 model")
        url = f"sqlite:///{root / 'bench.db'}"
        upgrade_database(url)
        engine = make_engine(url)
        with make_session_factory(engine)() as db:
            create_user(db, "bench", PASSWORD)
        engine.dispose()
        settings = Settings(data_dir=root / "var", database_url=url, model_dir=model_dir, worker_poll_s=0.05)
        with TestClient(create_app(settings)) as client:
            token = client.post("/api/v1/auth/token", data={"username": "bench", "password": PASSWORD}).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            print(f"provider: {client.get('/health').json()['provider']}")
            accepted: list[float] = []
            to_done: list[float] = []
            for i in range(args.studies):
                files = study_files(args.images, patient_id=f"BENCH-{i}", seed=i * 100)
                start = time.perf_counter()
                response = client.post("/api/v1/studies", files=multipart(files), headers=headers)
                accepted.append(time.perf_counter() - start)
                study_id = response.json()["study_id"]
                while client.get(f"/api/v1/studies/{study_id}", headers=headers).json()["status"] not in (
                    "done",
                    "failed",
                ):
                    time.sleep(0.02)
                to_done.append(time.perf_counter() - start)
            worklist: list[float] = []
            case: list[float] = []
            for _ in range(20):
                start = time.perf_counter()
                client.get("/api/v1/studies", headers=headers)
                worklist.append(time.perf_counter() - start)
                start = time.perf_counter()
                client.get(f"/api/v1/studies/{study_id}", headers=headers)
                case.append(time.perf_counter() - start)
    print(f"upload of {args.images} DICOM images → 202: {_ms(accepted)}")
    print(f"upload → analysis done: {_ms(to_done)}")
    print(f"GET /api/v1/studies with {args.studies} studies: {_ms(worklist)}")
    print(f"GET /api/v1/studies/{{id}}: {_ms(case)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
