"""Upload → verdict of one DICOM study through the real upload and worker code, stage by stage,
against the floor (bare pydicom decoding of the same files + bare ONNX Runtime on as many
images); prints JSON.

    .venv/bin/python benchmarks/bench_pipeline.py [--model DIR | --full-width] [--stills 20]
        [--repeat 5] [--prepare-processes N]

The study is one synthetic patient (app.synth, DICOM): ``--stills`` single-frame images and one
cine loop, every frame of which ingestion stores for playback and of which the worker analyses
the frames the card asks for. Each round uploads another patient (the same number and kind of
files): the same files again would be a re-upload, which points at its case and analyses
nothing. Each repeat copies the files into a fresh upload folder, runs ``import_upload``
(decode, display PNG and thumbnail,
blobs, rows) and then ``AnalysisWorker.process`` (stored images decoded and preprocessed in the
worker's process pool, inference, the model-resolution Grad-CAM kept, rows and verdict written)
on a SQLite database in a temporary folder. The worker and its pool are started once, as in a
server. Heatmaps are not drawn (the worker no longer draws them; the first view does), so
"rendering" is the display PNG and thumbnail written at upload.

``--full-width`` exports a randomly initialised full-width ResNet-34 (width 1.0, the paper's
3.66 GMAC per image; needs torch, in a subprocess) and serves it: random weights are fine for
timing. Stage seconds that run in the pool are summed over its processes (they overlap); the
wall-clock split is upload, worker and, inside the worker, inference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# BENCH_REPO=/path/to/another/checkout times that checkout's code with this script (a before/after
# comparison on the same machine and load); stages it does not record are reported as absent.
REPO = Path(os.environ.get("BENCH_REPO") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(REPO))


def machine() -> dict[str, Any]:
    """Where and under what load a number was taken (every benchmark's JSON carries it)."""
    load = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_1_5_15": [round(v, 2) for v in load],
        "python": platform.python_version(),
    }


def export_full_width(out: Path, width: float = 1.0) -> Path:
    """A random full-width ResNet-34 exported like a real model, in a subprocess (torch)."""
    code = (
        "import sys; from pathlib import Path; from app.training.export import export_untrained_demo; "
        f"export_untrained_demo(Path(sys.argv[1]), width={width}, seed=0)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
    return out


def make_studies(folder: Path, stills: int, n: int) -> list[list[Path]]:
    """``n`` synthetic patients' DICOM files, one list per patient (a patient depends only on the
    seed and its index, so the first is the same in every run)."""
    from app.synth import generate_dataset

    generate_dataset(folder, n_patients=n, seed=7, fmt="dicom", images_per_patient=(stills, stills))
    patients = sorted({path.parent for path in (folder / "dicom").rglob("*.dcm")}, key=lambda p: p.name)
    return [sorted(patient.glob("*.dcm")) for patient in patients]


class Floor:
    """Bare pydicom decoding of the files, and bare ONNX Runtime on as many images (one run)."""

    def __init__(self, engine: Any) -> None:
        import numpy as np

        self.engine = engine
        h, w = engine.spec.size
        self.batch = np.zeros((engine.batch_size, 3, h, w), np.float32)
        self.infer(engine.batch_size)  # the first run allocates

    @staticmethod
    def decode(files: list[Path]) -> None:
        import pydicom

        for path in files:
            pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is the point

    def infer(self, n: int) -> None:
        size = self.engine.batch_size
        for start in range(0, n, size):
            self.engine.run_outputs(self.batch[: min(size, n - start)])

    def run(self, files: list[Path], n_images: int) -> dict[str, float]:
        t0 = time.perf_counter()
        self.decode(files)
        t1 = time.perf_counter()
        self.infer(n_images)
        t2 = time.perf_counter()
        return {"decode_s": t1 - t0, "inference_s": t2 - t1, "total_s": t2 - t0}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO / "models" / "fetal-cns-demo")
    parser.add_argument("--full-width", action="store_true", help="serve a random full-width ResNet-34")
    parser.add_argument("--stills", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--prepare-processes", type=int, default=None, help="default: one per core")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from sqlalchemy import select

    from app.web.core.migrations import upgrade_database
    from app.web.core.models import Analysis, ImagePredictionRow
    from app.web.runtime import build_runtime, load_inference
    from app.web.services.analysis_worker import AnalysisWorker
    from app.web.services.uploads import ReceivedFiles, UploadOverrides, import_upload
    from app.web.settings import Settings

    start_load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        model = export_full_width(tmp / "full") if args.full_width else args.model
        studies = make_studies(tmp / "synth", args.stills, args.repeat + 1)
        url = f"sqlite:///{tmp}/bench.sqlite"
        upgrade_database(url)
        values: dict[str, Any] = dict(
            database_url=url,
            data_dir=tmp / "var",
            model_dir=model,
            secret_key="bench",
            inference_device="cpu",
            inference_batch_size=args.batch_size,
            worker_enabled=False,
        )
        if "worker_prepare_processes" in Settings.model_fields:
            values["worker_prepare_processes"] = args.prepare_processes
        settings = Settings(**values)
        runtime = build_runtime(settings)
        load_inference(runtime)
        engine = runtime.inference
        assert engine is not None, runtime.inference_error
        worker = AnalysisWorker(runtime)
        # As in a server with the in-process worker (app.web.app): the upload sees this process's worker.
        runtime.worker = worker
        if hasattr(worker, "pool"):
            worker.pool.warm_up()

        runs: list[dict[str, Any]] = []
        n_images = 0
        floor = Floor(engine)
        # The floor is measured in every round, just after the analysis (it needs the number of
        # images analysed, which differs between patients), so that a change of load
        # (other processes on the machine) hits both; the ratio is taken round by round.
        for index in range(args.repeat + 1):  # the first run warms caches and is dropped
            folder = tmp / f"upload{index}"
            folder.mkdir()
            files = studies[index]
            paths = [Path(shutil.copy(path, folder / f"{n:03d}-{path.name}")) for n, path in enumerate(files)]
            received = ReceivedFiles(directory=folder, paths=paths)
            t0 = time.perf_counter()
            outcome = import_upload(runtime, received, UploadOverrides(patient_id=f"BENCH{index}"), None)
            t1 = time.perf_counter()
            analysis_id = outcome.studies[0].analysis_id
            assert analysis_id is not None and worker.process(analysis_id)
            t2 = time.perf_counter()
            with runtime.session_factory() as db:
                analysis = db.get(Analysis, analysis_id)
                assert analysis is not None and analysis.status == "done", analysis and analysis.error
                worker_timings = dict(analysis.timings or {})
                # The floor runs the model on as many images as the worker analysed (of a cine
                # loop, the frames the card asks for, not every stored frame).
                n_analysed = len(
                    db.scalars(
                        select(ImagePredictionRow.id).where(ImagePredictionRow.analysis_id == analysis_id)
                    ).all()
                )
            assert not outcome.studies[0].duplicate and n_analysed, "each round must analyse a new study"
            n_images = outcome.studies[0].n_images
            floor_now = floor.run(files, n_analysed)
            if index:
                upload_timings = getattr(outcome, "timings", {})
                runs.append(
                    {"upload_s": t1 - t0, "worker_s": t2 - t1, "total_s": t2 - t0, "upload": upload_timings}
                    | {"worker": worker_timings, "floor": floor_now, "images_analysed": n_analysed}
                )
            received.cleanup()
        if hasattr(worker, "close"):
            worker.close()

        median_run = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
        ratios = sorted(round(r["total_s"] / r["floor"]["total_s"], 2) for r in runs)
        up, wk = median_run["upload"], median_run["worker"]
        total = median_run["total_s"]
        stages = {
            "decode_dicom_s": up.get("decode_s"),
            "wait_for_encoding_s": up.get("handover_s"),
            "encode_display_and_thumbnail_s": up.get("encode_s"),
            "model_input_at_upload_s": up.get("model_input_s"),
            "store_blobs_s": up["store_s"] + up["prepare_s"] if "store_s" in up else None,
            "db_upload_s": up.get("db_s"),
            "read_blobs_s": wk.get("load_s"),
            "decode_display_png_s": wk.get("decode_s"),
            "crop_s": wk.get("crop_s"),
            "preprocess_s": wk.get("preprocess_s"),
            "flags_s": wk.get("flags_s"),
            "inference_s": wk.get("inference_s"),
            "cam_s": wk.get("cam_s"),
            "render_heatmaps_s": wk.get("render_s", 0.0),
            "db_worker_s": wk.get("db_s"),
        }
        result = {
            "benchmark": "pipeline upload -> verdict",
            "machine": machine(),
            "load_avg_at_start": [round(v, 2) for v in start_load],
            "model": {"name": engine.card.name, "architecture": engine.card.raw.get("architecture")},
            "provider": engine.provider,
            "prepare_processes": worker.pool.processes if hasattr(worker, "pool") else 0,
            "model_inputs_from_upload": getattr(getattr(worker, "prepared_inputs", None), "hits", None),
            "files": len(studies[0]),
            "images_stored": n_images,
            "images_analysed_in_median_run": median_run["images_analysed"],
            "repeats": args.repeat,
            "median_run": {
                "total_s": round(total, 4),
                "upload_s": round(median_run["upload_s"], 4),
                "worker_s": round(median_run["worker_s"], 4),
                "stages_s": {k: None if v is None else round(v, 4) for k, v in stages.items()},
                "non_inference_share": round(1 - (stages["inference_s"] or 0.0) / total, 3),
            },
            "all_totals_s": [round(r["total_s"], 4) for r in runs],
            "floor_of_median_run": {k: round(v, 4) for k, v in median_run["floor"].items()},
            "ratios_to_floor": ratios,
            "median_ratio_to_floor": statistics.median(ratios),
            "code": str(REPO),
            "note": "encode/store and pool stage seconds are summed over threads/processes and overlap "
            "other stages; the wall-clock split is upload_s/worker_s; the floor is measured in each round",
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
