"""Worklist latency with many cases: one page of the suspicion order (first and last page),
a search, and a filter, through app.web.services.studies.worklist_page, which the worklist page,
its live feed and the API share. Prints JSON.

    .venv/bin/python benchmarks/bench_worklist.py [--cases 5000] [--database-url URL]

Cases are written straight into a fresh database (tests/reading_room_support.py), as the upload
and the worker leave them; default a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from reading_room_support import seed_cases

    from app.web.core.db import make_engine, make_session_factory
    from app.web.core.migrations import upgrade_database
    from app.web.services.studies import WorklistQuery, worklist_page
    from app.web.services.users import create_user, find_user

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade_database(url)
        engine = make_engine(url)
        started = time.perf_counter()
        seed_cases(engine, args.cases, prefix="BENCH")
        seeded_s = time.perf_counter() - started
        factory = make_session_factory(engine)
        with factory() as db:
            if find_user(db, "bench") is None:
                create_user(db, "bench", "a long bench password")
            viewer = find_user(db, "bench")
            last_page = (args.cases - 1) // 50
            queries = {
                "first page, most suspicious first": (WorklistQuery(), 0),
                "last page, most suspicious first": (WorklistQuery(), last_page * 50),
                "search by patient ID": (WorklistQuery(q=f"BENCH-{args.cases:05d}"), 0),
                "indeterminate, newest first": (WorklistQuery(verdict="indeterminate", sort="date"), 0),
            }
            timings: dict[str, dict[str, float]] = {}
            for name, (query, offset) in queries.items():
                runs = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    page = worklist_page(db, viewer, "concurrent", query, limit=50, offset=offset)
                    runs.append(time.perf_counter() - t0)
                timings[name] = {
                    "median_ms": round(statistics.median(runs) * 1000, 1),
                    "max_ms": round(max(runs) * 1000, 1),
                    "total": page.total,
                    "rows": len(page.items),
                }
        engine.dispose()
    print(
        json.dumps(
            {
                "cases": args.cases,
                "backend": url.split(":", 1)[0],
                "seed_s": round(seeded_s, 2),
                "timings": timings,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
