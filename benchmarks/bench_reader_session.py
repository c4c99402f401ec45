"""How long a reader's session of N cases takes in the browser (Chromium, Playwright); prints JSON.

Starts a real server with the bundled demo model on a fresh SQLite database, uploads N synthetic
DICOM studies (app.synth, mixed classes and sites), waits for their verdicts, builds a reader
study (one reader, the given modes, sequential design, the synthetic class as the reference), then
signs in as the reader in headless Chromium and answers every read through the reading page:
one click on a class, one on a confidence, Submit (in a second read, twice). ``--think-s`` waits
that long on each page before answering, to stand in for the human; with 0 the figure is the
tool's own share of a session (page loads, images, the server's work), not a human's reading time.

Reported: the wall time of the session from the first reading page to "answered every read", per
read p50/p95 of the browser time (answer submitted to the next page ready), and the reading times
the server measured (``read_time_s`` of the export).

    .venv/bin/python benchmarks/bench_reader_session.py [--cases 20] [--modes concurrent]
        [--think-s 0] [--model models/fetal-cns-demo]

Not a test: numbers depend on the machine and its load (reported).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from web_browser_support import PASSWORD, chromium_page, live_server, sign_in  # noqa: E402


def _token(url: str, username: str) -> dict[str, str]:
    response = httpx.post(
        f"{url}/api/v1/auth/token", data={"username": username, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _synthetic_studies(out: Path, n: int, seed: int) -> list[tuple[str, list[Path]]]:
    from app.synth import generate_dataset

    manifest = generate_dataset(
        out, n_patients=n, seed=seed, fmt="dicom", images_per_patient=(5, 5), site_mix="random"
    )
    by_patient: dict[str, list[Path]] = defaultdict(list)
    label: dict[str, str] = {}
    with manifest.open() as handle:
        for row in csv.DictReader(handle):
            label[row["patient_id"]] = row["class"]
    for path in sorted((out / "dicom").rglob("*.dcm")):
        by_patient[path.parent.name].append(path)
    return [(label[p], files) for p, files in sorted(by_patient.items())]


def _upload(url: str, headers: dict[str, str], files: list[Path]) -> int:
    parts = [("files", (f"{i:03d}.dcm", f.read_bytes(), "application/dicom")) for i, f in enumerate(files)]
    response = httpx.post(f"{url}/api/v1/studies", files=parts, headers=headers, timeout=120)
    response.raise_for_status()
    return int(response.json()["study_id"])


def _wait_done(url: str, headers: dict[str, str], ids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for study_id in ids:
        while (
            httpx.get(f"{url}/api/v1/studies/{study_id}", headers=headers, timeout=30).json()["status"]
            != "done"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"study {study_id} not analysed within {timeout_s} s")
            time.sleep(0.3)


def _answer(page: object, label: str, confidence: int) -> None:
    page.locator(f"input[name=label][value='{label}']").check()  # type: ignore[attr-defined]
    page.locator(f"input[name=confidence][value='{confidence}']").check()  # type: ignore[attr-defined]
    page.get_by_role("button", name="Submit").click()  # type: ignore[attr-defined]
    page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--modes", nargs="+", default=["concurrent"])
    parser.add_argument("--think-s", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "fetal-cns-demo")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-reader-") as tmp:
        root = Path(tmp)
        studies = _synthetic_studies(root / "synth", args.cases, args.seed)
        with live_server(root / "server", args.model) as server, chromium_page() as page:
            admin = _token(server.url, "admin")
            ids = [_upload(server.url, admin, files) for _, files in studies]
            _wait_done(server.url, admin, ids, timeout_s=60 + 10 * args.cases)
            body = {
                "name": "Session benchmark",
                "study_ids": ids,
                "readers": ["rad"],
                "modes": args.modes,
                "design": "sequential",
                "reference": {str(i): label for i, (label, _) in zip(ids, studies, strict=True)},
            }
            created = httpx.post(f"{server.url}/api/v1/reader-studies", json=body, headers=admin, timeout=30)
            created.raise_for_status()
            rs = created.json()["id"]

            sign_in(page, server.url, "rad")
            page.goto(f"{server.url}/reader-studies/{rs}/read")
            page.wait_for_load_state("networkidle")
            per_read: list[float] = []
            started = time.monotonic()
            while page.locator("[data-read]").count():
                t0 = time.monotonic()
                mode = page.locator("[data-read]").get_attribute("data-mode")
                time.sleep(args.think_s)
                _answer(page, "normal", 3)
                if mode == "second-read":
                    time.sleep(args.think_s)
                    _answer(page, "normal", 4)
                per_read.append(time.monotonic() - t0 - args.think_s * (2 if mode == "second-read" else 1))
            total = time.monotonic() - started
            if not page.get_by_text("You have answered every read of this study").count():
                raise RuntimeError("the session did not end on the 'answered every read' page")
            export = httpx.get(
                f"{server.url}/api/v1/reader-studies/{rs}/reads", headers=admin, timeout=30
            ).json()
    server_times = [r["read_time_s"] for r in export if r["read_time_s"] is not None]
    print(
        json.dumps(
            {
                "benchmark": "reader_session",
                "cases": args.cases,
                "modes": args.modes,
                "reads": len(per_read),
                "think_s": args.think_s,
                "session_wall_s": round(total, 2),
                "browser_overhead_per_read_s": {
                    "mean": round(statistics.fmean(per_read), 3),
                    "p50": round(_pct(per_read, 0.5), 3),
                    "p95": round(_pct(per_read, 0.95), 3),
                },
                "server_read_time_s": {
                    "sum": round(sum(server_times), 2),
                    "median": round(statistics.median(server_times), 3),
                },
                "model": args.model.name,
                "cpu_count": os.cpu_count(),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
