"""Fuzz ingestion (DICOM, PNG/JPEG/BMP/TIFF, ZIP) with hypothesis and print the counts as JSON.

Each input is a real seed file mutated (bit flips, boundary values, insertions, deletions,
truncation, hostile DICOM header fields, hostile ZIP structure: see tests/fuzz_support.py) and
fed to ``app.ingest.ingest_paths``. The property: it never raises, the input is imported or
rejected with a non-empty reason, images are display RGB uint8, no reason quotes patient data,
and nothing is half-written (temp folder emptied, input untouched). Failures are counted, not
shrunk, so a long run sees all of them.

    .venv/bin/python benchmarks/fuzz_ingest.py [--inputs 100000] [--seed 0] [--failures-dir DIR]

Prints {"inputs", "failures", "seconds", ...}; exit status 1 when any input failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _limit_memory(gib: float) -> None:
    """A hostile header may ask a decoder for gigabytes: let it get a MemoryError, not the machine."""
    if gib > 0:
        limit = int(gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run(
    n_inputs: int, seed: int, chunk: int, failures_dir: Path | None, progress: Path | None
) -> dict[str, Any]:
    from fuzz_support import FuzzInput, FuzzTally, counting_body, fuzz_inputs, seeds
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    seeds()  # read the seed files before the clock starts
    tally = FuzzTally()
    slowest = {"seconds": 0.0, "input": ""}

    def save(item: FuzzInput, problems: list[str]) -> None:
        if failures_dir is not None:
            failures_dir.mkdir(parents=True, exist_ok=True)
            stem = failures_dir / f"failure-{len(tally.failures):05d}"
            stem.with_suffix(".bin").write_bytes(item.data)
            stem.with_suffix(".txt").write_text(item.describe() + "\n" + "\n".join(problems) + "\n")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fetalcns-fuzz-") as tmp:
        body = counting_body(tally, Path(tmp), save)

        def timed(item: FuzzInput) -> None:
            t0 = time.monotonic()
            body(item)
            took = time.monotonic() - t0
            if took > slowest["seconds"]:
                slowest.update(seconds=round(took, 3), input=item.describe()[:300])

        round_index = 0
        while tally.inputs < n_inputs and round_index < 10 * (n_inputs // chunk + 1):
            # Fresh hypothesis runs of `chunk` inputs: memory stays flat over 100,000 inputs, and
            # each round has its own seed, so the whole run is reproducible from --seed.
            wanted = min(chunk, n_inputs - tally.inputs)
            runner = settings(
                max_examples=wanted,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(hypothesis_seed(seed * 1_000_003 + round_index)(given(fuzz_inputs())(timed)))
            runner()
            round_index += 1
            elapsed = time.monotonic() - started
            print(
                f"{tally.inputs} inputs, {len(tally.failures)} failures, {tally.inputs / elapsed:.1f}/s",
                file=sys.stderr,
                flush=True,
            )
            if progress is not None:
                progress.write_text(json.dumps(_summary(tally, elapsed, seed, slowest)) + "\n")
    return _summary(tally, time.monotonic() - started, seed, slowest)


def _summary(tally: Any, seconds: float, seed: int, slowest: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": tally.inputs,
        "failures": len(tally.failures),
        "seconds": round(seconds, 1),
        "imported": tally.imported,
        "rejected": tally.rejected,
        "by_kind": tally.by_kind,
        "seed": seed,
        "slowest": slowest,
        "first_failures": tally.failures[:10],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=2000, help="inputs per hypothesis run")
    parser.add_argument("--failures-dir", type=Path, help="write each failing input and its problems here")
    parser.add_argument(
        "--progress", type=Path, help="rewrite this JSON file with the counts after each chunk"
    )
    parser.add_argument("--memory-gib", type=float, default=8.0, help="address-space limit (0: none)")
    args = parser.parse_args()
    _limit_memory(args.memory_gib)
    # Ingestion logs one line per file and pydicom a traceback per damaged frame; a hundred thousand
    # of them say nothing (failures are counted and saved instead).
    logging.basicConfig(level=logging.ERROR)
    import pydicom  # noqa: F401  (it sets its logger's level when imported)

    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    import warnings

    warnings.simplefilter("ignore")
    result = run(args.inputs, args.seed, max(1, args.chunk), args.failures_dir, args.progress)
    print(json.dumps(result, indent=2))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
