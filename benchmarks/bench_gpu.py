"""The GPU path in one run: fp16 export and its parity, model throughput (CUDA EP with IO binding,
optionally TensorRT with an engine cache) and the end-to-end pipeline; prints JSON.

    benchmarks/gpu.sh                      # the whole benchmark, under 5 minutes on an H100/H200
    .venv/bin/python benchmarks/bench_gpu.py [--device cuda:0] [--batch 256] [--seconds 8]
        [--pipeline-images 4096] [--no-tensorrt] [--budget-s 280]

Steps, each timed and reported:
1. a randomly initialised full-width ResNet-34 (the paper's 3.66 GMAC per image; random weights
   are fine for timing) exported like a real model (torch on the CPU, ~20 s);
2. ``fetalcns export --quantize fp16`` of it, its parity checked against fp32 on held-out
   synthetic patients with the fp16 model running on the GPU (max probability difference ≤ 1e-2);
3. model throughput at ``--batch`` for fp32 and fp16 on CUDA: with the batch already in GPU memory
   (the model alone) and from host memory through IO binding (what the worker does);
4. TensorRT (fp16, engine cached under the scratch folder) at the same batch, skipped when less
   than 100 s of ``--budget-s`` are left (building an engine takes minutes on some GPUs);
5. the end-to-end pipeline the worker runs: stored display PNGs decoded and preprocessed in a
   process pool of one process per core (app.inference.prepare.PreparePool), scored in batches
   on the GPU with the next batch prepared meanwhile, model-resolution Grad-CAM kept.

Without a usable NVIDIA GPU it prints ``{"gpu": false, ...}`` with the reason and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_pipeline import export_full_width, machine  # noqa: E402

OUTPUTS = ["logits", "cam", "features"]


def gpu_info() -> dict[str, Any]:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return {"nvidia_smi": done.stdout.strip().splitlines()}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"nvidia_smi": f"unavailable ({type(exc).__name__})"}


def throughput(run: Any, batch: int, seconds: float) -> dict[str, float]:
    """Images/s of ``run`` (one batch per call) over about ``seconds`` after two warm-up calls."""
    run()
    run()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run()
        count += 1
    elapsed = time.perf_counter() - t0
    return {
        "images_per_s": round(count * batch / elapsed, 1),
        "ms_per_batch": round(elapsed / count * 1000, 2),
    }


def device_resident(engine: Any, batch: np.ndarray) -> Any:
    """A runner whose input already lives in GPU memory: the model's own speed."""
    import onnxruntime as ort

    session, device_id = engine._session, engine._device_id
    value = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", device_id)
    binding = session.io_binding()
    binding.bind_ortvalue_input(engine.card.input_name, value)
    for name in OUTPUTS:
        binding.bind_output(name, "cuda", device_id)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def stored_pngs(scratch: Path, distinct: int) -> list[bytes]:
    """Display PNGs as the upload stores them, from synthetic DICOM studies."""
    from app.inference.render import encode_display_png
    from app.ingest import IngestOptions, ingest_paths
    from app.synth import generate_dataset

    patients = max(1, distinct // 8)
    generate_dataset(scratch / "synth", n_patients=patients, seed=3, fmt="dicom", images_per_patient=(8, 8))
    result = ingest_paths([scratch / "synth" / "dicom"], IngestOptions(max_frames_per_cine=1))
    return [encode_display_png(image.pixels) for study in result.studies for image in study.images]


def pipeline(engine: Any, pngs: list[bytes], total: int, batch: int) -> dict[str, Any]:
    """Decode + preprocess in the pool, inference on the GPU, the next batch prepared meanwhile."""
    from app.inference.analysis import score_prepared
    from app.inference.prepare import PreparePool

    pool = PreparePool()
    pool.warm_up()
    items = [pngs[i % len(pngs)] for i in range(total)]

    def submit(start: int) -> list[Any]:
        return [pool.submit(data, engine.spec, None, {}) for data in items[start : start + batch]]

    inference_s = 0.0
    t0 = time.perf_counter()
    upcoming = submit(0)
    done = 0
    for start in range(0, total, batch):
        current = upcoming
        upcoming = submit(start + batch) if start + batch < total else []
        prepared = [future.result() for future in current]
        t1 = time.perf_counter()
        predictions = score_prepared(engine, prepared, list(range(len(prepared))), {})
        inference_s += time.perf_counter() - t1
        done += sum(p is not None for p in predictions)
        for p in predictions:
            p.model_cam  # noqa: B018 - what the worker keeps
    elapsed = time.perf_counter() - t0
    pool.close()
    return {
        "images": done,
        "images_per_s": round(done / elapsed, 1),
        "seconds": round(elapsed, 2),
        "inference_share": round(inference_s / elapsed, 3),
        "prepare_processes": pool.processes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pipeline-images", type=int, default=4096)
    parser.add_argument("--no-tensorrt", action="store_true")
    parser.add_argument("--budget-s", type=float, default=280.0)
    args = parser.parse_args()
    started = time.perf_counter()

    from app.inference.engine import InferenceEngine
    from app.inference.runtime import CUDA, EngineError, choose_providers, gpu_present

    result: dict[str, Any] = {"benchmark": "GPU path", "machine": machine(), **gpu_info()}
    try:
        choose_providers(args.device)
    except EngineError as exc:
        result.update(gpu=False, reason=str(exc), gpu_device_nodes=gpu_present())
        print(json.dumps(result, indent=2))
        return 2
    result["gpu"] = True
    steps: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        t = time.perf_counter()
        model_dir = export_full_width(scratch / "model")
        steps["export_s"] = round(time.perf_counter() - t, 1)

        from app.synth import generate_dataset
        from app.training.variants import make_variant

        t = time.perf_counter()
        generate_dataset(scratch / "parity", n_patients=9, seed=21, images_per_patient=(4, 4))
        entry = make_variant(model_dir, "fp16", scratch / "parity", device=args.device)
        result["fp16_parity"] = {k: v for k, v in entry["parity"].items() if k != "data"}
        steps["fp16_export_and_parity_s"] = round(time.perf_counter() - t, 1)

        x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
        models: dict[str, Any] = {}
        t = time.perf_counter()
        for precision in ("fp32", "fp16"):
            if precision == "fp16" and not entry["parity"]["passed"]:
                continue
            engine = InferenceEngine(
                model_dir, device=args.device, batch_size=args.batch, precision=precision
            )
            models[precision] = {
                "provider": engine.provider,
                "session": engine.session_settings,
                "device_resident": throughput(device_resident(engine, x), args.batch, args.seconds),
                "host_io_binding": throughput(lambda e=engine: e.run_outputs(x), args.batch, args.seconds),
            }
        steps["cuda_throughput_s"] = round(time.perf_counter() - t, 1)

        left = args.budget_s - (time.perf_counter() - started)
        if args.no_tensorrt:
            models["tensorrt_fp16"] = {"skipped": "--no-tensorrt"}
        elif left < 100:
            models["tensorrt_fp16"] = {"skipped": f"only {left:.0f} s of the budget left"}
        else:
            t = time.perf_counter()
            try:
                trt = InferenceEngine(
                    model_dir,
                    device=args.device,
                    batch_size=args.batch,
                    precision="fp16" if entry["parity"]["passed"] else "fp32",
                    tensorrt=True,
                    tensorrt_cache=scratch / "trt-cache",
                )
                run = device_resident(trt, x)
                run()  # builds the engine (cached for the next start)
                models["tensorrt_fp16"] = {
                    "provider": trt.provider,
                    "engine_build_s": round(time.perf_counter() - t, 1),
                    "device_resident": throughput(run, args.batch, args.seconds),
                }
            except Exception as exc:  # a TensorRT build failure must not lose the other numbers
                models["tensorrt_fp16"] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
            steps["tensorrt_s"] = round(time.perf_counter() - t, 1)
        result["model_batch_" + str(args.batch)] = models

        t = time.perf_counter()
        best = "fp16" if "fp16" in models else "fp32"
        engine = InferenceEngine(model_dir, device=args.device, batch_size=args.batch, precision=best)
        pngs = stored_pngs(scratch, 64)
        result["pipeline"] = {"precision": best, "provider": engine.provider, "distinct_images": len(pngs)}
        result["pipeline"].update(pipeline(engine, pngs, args.pipeline_images, args.batch))
        steps["pipeline_s"] = round(time.perf_counter() - t, 1)
        result["cuda_device_check"] = {"device": args.device, "provider_is_cuda": engine.provider == CUDA}
    steps["total_s"] = round(time.perf_counter() - started, 1)
    result["steps"] = steps
    result["load_avg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
