"""Long schemathesis run against a live server; prints the counts as JSON.

Starts uvicorn on a fresh database (SQLite, or a new PostgreSQL database that is dropped at
the end), signs in as an administrator, seeds one analysed study and a spare user, then
sends generated requests (positive and negative) to every operation of the app's OpenAPI
document in rounds, a new seed each round, until the time budget is spent. Every answer is
checked: no 5xx, and status, content type, headers and body as documented
(tests/schemathesis_support.py; tests/test_web_schemathesis.py is the short run).

    .venv/bin/python benchmarks/schemathesis_api.py --minutes 30 [--examples 300] [--postgres]

Prints {"cases", "failures", "server_errors", "by_status", "failures_by_check", ...}.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def _postgres_database(prefix: str) -> tuple[str, str]:
    import psycopg

    name = f"{prefix}{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _drop_postgres(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget of the whole run")
    parser.add_argument("--examples", type=int, default=300, help="cases per operation, mode and round")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round (then +1 a round)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL at 127.0.0.1:5432, not SQLite")
    parser.add_argument(
        "--pg-prefix", default="fetalcns_schemathesis_", help="name prefix of the new database"
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="default: an untrained narrow model")
    args = parser.parse_args()

    from schemathesis_support import FuzzReport, run_schemathesis, seed_data, sign_in
    from web_browser_support import PASSWORD, live_server
    from web_support import study_files

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            from app.training.export import export_untrained_demo

            model_dir = root / "model"
            export_untrained_demo(model_dir, width=0.125, seed=0)
        database, url = _postgres_database(args.pg_prefix) if args.postgres else (None, None)
        total = FuzzReport()
        rounds = 0
        try:
            with live_server(root / "server", model_dir, database_url=url) as server:
                me = sign_in(server.url, "admin", PASSWORD)
                protected = seed_data(server.url, me, study_files(2))
                deadline = time.monotonic() + args.minutes * 60
                while time.monotonic() < deadline:
                    report = run_schemathesis(
                        server.url,
                        me.token,
                        max_examples=args.examples,
                        seed=args.seed + rounds,
                        protected=protected,
                        time_budget_s=deadline - time.monotonic(),
                    )
                    rounds += 1
                    total.add(report)
                    print(json.dumps({"round": rounds, **report.as_json()}), file=sys.stderr, flush=True)
                log = server.log_path.read_text(errors="replace")
        finally:
            if database is not None:
                _drop_postgres(database)
    result = {
        "backend": "postgresql" if args.postgres else "sqlite",
        "rounds": rounds,
        "examples_per_operation_mode_round": args.examples,
        "first_seed": args.seed,
        **total.as_json(),
        "server_log_unexpected_errors": log.count("unexpected error"),
    }
    print(json.dumps(result, indent=2))
    return 0 if total.failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
