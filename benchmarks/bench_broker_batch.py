"""Studies per second through one `fetalcns worker` on a real broker, with and without batching
across studies (``--batch-studies``); prints JSON.

For each ``--batch-studies`` value (and each round, the values alternating so that a change of
the machine's load falls on both) it makes a fresh PostgreSQL database and broker queue, uploads
``--studies`` synthetic demo studies (app.synth, five DICOM images each, the sites in turn, as
`fetalcns demo-data` makes them) through a web app that only sends to the broker, then starts one
worker process (CPU, the bundled demo model) and waits until every analysis is done. The rate is
studies over the span from the first claim to the last stored result (the analyses' own
``started_at``/``finished_at``), so the worker's start-up (model load) is not in it. Also reported:
the groups the worker scored together and their model batches (its "run together" log lines).

    .venv/bin/python benchmarks/bench_broker_batch.py [--studies 10] [--batch-studies 1 8]
        [--rounds 2] [--broker-url redis://127.0.0.1:6379/0]

Not a test: numbers depend on the machine; run it on an otherwise idle one to compare.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_pipeline import machine  # noqa: E402

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
_BATCH_LINE = re.compile(r"analyses ([0-9,]+) run together: (\d+) images in (\d+) model batches")


def _demo_studies(root: Path, n_studies: int) -> list[list[tuple[str, bytes]]]:
    """The files of ``n_studies`` synthetic patients, one list per study."""
    from app.synth import generate_dataset
    from app.synth.sites import SITES

    generate_dataset(
        root, n_patients=n_studies, seed=2025, fmt="dicom", images_per_patient=(5, 5), sites=list(SITES)
    )
    by_patient: dict[Path, list[Path]] = {}
    for path in sorted((root / "dicom").rglob("*.dcm")):
        by_patient.setdefault(path.parent, []).append(path)
    return [[(p.name, p.read_bytes()) for p in paths] for paths in by_patient.values()]


def run_one(
    batch_studies: int, studies: list[list[tuple[str, bytes]]], args: argparse.Namespace
) -> dict[str, Any]:
    import psycopg
    from web_support import reset_database
    from worker_support import Cluster, forget_redis_queue

    from app.web.core.migrations import upgrade_database

    name = f"fetalcns_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    queue = f"fetalcns-bench-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="bench-broker-batch-") as tmp:
        cluster = Cluster(
            db_url, args.broker_url, queue, Path(tmp) / "var", REPO / "models" / "fetal-cns-demo"
        )
        cluster.lease_s = 60.0
        cluster.data_dir.mkdir()
        try:
            upgrade_database(db_url)
            reset_database(db_url)  # the uploading user
            h = cluster.web()
            for files in studies:
                response = h.upload(files)
                assert response.status_code == 202, response.text
            load_before = machine()["load_avg_1_5_15"]
            worker = cluster.start_worker("--batch-studies", str(batch_studies))
            ready = time.perf_counter()
            analyses = cluster.wait(
                lambda a: len(a) == len(studies) and all(x.status in ("done", "failed") for x in a), 600
            )
            ready_to_done = time.perf_counter() - ready
            statuses = sorted({a.status for a in analyses})
            span = (
                max(a.finished_at for a in analyses) - min(a.started_at for a in analyses)
            ).total_seconds()
            groups = _BATCH_LINE.findall(worker.log())
            return {
                "batch_studies": batch_studies,
                "studies": len(analyses),
                "statuses": statuses,
                "attempts": sorted({a.attempts for a in analyses}),
                "first_claim_to_last_result_s": round(span, 2),
                "studies_per_s": round(len(analyses) / span, 2),
                "worker_ready_to_all_done_s": round(ready_to_done, 2),
                "groups": [len(ids.split(",")) for ids, _, _ in groups],
                "model_batches": sum(int(passes) for _, _, passes in groups),
                "load_avg_1_5_15_before": load_before,
                "load_avg_1_5_15_after": machine()["load_avg_1_5_15"],
            }
        finally:
            cluster.close()
            if args.broker_url.startswith("redis"):
                forget_redis_queue(queue)
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--batch-studies", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    import worker_support

    # The queue clean-up reads the same Redis database the worker used.
    worker_support.REDIS_URL = args.broker_url
    with tempfile.TemporaryDirectory(prefix="bench-broker-studies-") as tmp:
        studies = _demo_studies(Path(tmp), args.studies)
    runs = []
    for round_number in range(args.rounds):
        order = args.batch_studies if round_number % 2 == 0 else list(reversed(args.batch_studies))
        runs += [run_one(k, studies, args) for k in order]
    rates = {
        k: sorted(r["studies_per_s"] for r in runs if r["batch_studies"] == k) for k in args.batch_studies
    }
    print(
        json.dumps(
            {
                "benchmark": "bench_broker_batch",
                "machine": machine(),
                "images_per_study": sorted({len(s) for s in studies}),
                "broker": args.broker_url.split("://", 1)[0],
                "runs": runs,
                "studies_per_s_by_batch_studies": rates,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
