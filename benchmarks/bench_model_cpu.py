"""The model on the CPU: ONNX Runtime against PyTorch eager on the same full-width ResNet-34
weights, both against the SGEMM peak measured in the same run, and ORT int8 against ORT fp32;
prints JSON.

    .venv/bin/python benchmarks/bench_model_cpu.py [--width 1.0] [--batches 1 8 32] [--repeat 7]
        [--threads N] [--no-int8] [--parity-patients 12]

The weights are a randomly initialised ResNet-34 (app.training.export.build_untrained_model, its
batch-norm statistics estimated on a few random images) at ``--width`` (1.0: the paper's
3.66 GMAC per image): random weights are fine for timing, and say nothing about accuracy. ORT
runs the exported graph (logits, in-graph Grad-CAM and features); torch runs the very module
that was exported (CamHead), in eval mode under ``torch.inference_mode``. The two are interleaved
run by run in one process, with the same thread count, so that load changes hit both.

SGEMM peak: the best GFLOP/s of ``torch.mm`` on 2048² float32 matrices (oneDNN/MKL, the same
threads). Model GFLOP/s = 2 × MACs × images/s, MACs counted from the convolutions and the linear
layer at the model's input size.

int8: ``fetalcns export --quantize int8`` on the same weights (calibration and a parity check on
a synthetic set of ``--parity-patients`` patients), then timed interleaved with fp32 at batch 8.
With random weights the parity check is a software check only (the verdicts of an untrained
model carry no meaning); docs/performance.md says so.

torch is imported here, in a benchmark, never by the serving path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_pipeline import machine  # noqa: E402


def count_macs(model: Any, size: tuple[int, int]) -> int:
    """Multiply-accumulates of one image through every Conv2d and Linear (forward hooks)."""
    import torch

    total = 0

    def conv_hook(module: Any, _inputs: Any, output: Any) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: Any, _inputs: Any, output: Any) -> None:
        nonlocal total
        total += output[0].numel() * module.in_features

    hooks = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    with torch.inference_mode():
        model(torch.zeros(1, 3, *size))
    for hook in hooks:
        hook.remove()
    return total


def sgemm_peak(threads: int, n: int = 2048, repeat: int = 7) -> float:
    """Best GFLOP/s of an n×n float32 matrix product (torch.mm) with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def _stats(times: list[float], batch: int) -> dict[str, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    p50 = statistics.median(ordered)
    return {
        "images_per_s": round(batch / p50, 2),
        "p50_ms": round(p50 * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
    }


def interleaved(runs: dict[str, Any], batch: int, repeat: int) -> dict[str, dict[str, float]]:
    """Each runner once per round, ``repeat`` rounds after one warm-up round; per-run seconds."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeat + 1):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            if round_:
                times[name].append(time.perf_counter() - t0)
    return {name: _stats(values, batch) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--parity-patients", type=int, default=12)
    args = parser.parse_args()

    import torch

    from app.inference.engine import InferenceEngine
    from app.training.export import build_untrained_model, export_onnx
    from app.training.model import CamHead

    start_load = os.getloadavg()
    torch.set_num_threads(args.threads)
    model = build_untrained_model(width=args.width, seed=0)
    head = CamHead(model).eval()
    size = (224, 224)
    macs = count_macs(model, size)
    result: dict[str, Any] = {
        "benchmark": "model on the CPU: ORT vs torch eager, SGEMM peak, int8",
        "machine": machine(),
        "load_avg_at_start": [round(v, 2) for v in start_load],
        "weights": f"random init ResNet-34 width {args.width:g} (timing only)",
        "gmac_per_image": round(macs / 1e9, 3),
        "threads": args.threads,
        "torch": {"version": torch.__version__, "threads": torch.get_num_threads()},
    }
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = export_onnx(
            model, Path(scratch) / "model", {"name": "bench-full-width", "version": "0.0.0"}
        )
        engine = InferenceEngine(model_dir, device="cpu", batch_size=max(args.batches), threads=args.threads)
        spinning = InferenceEngine(
            model_dir, device="cpu", batch_size=max(args.batches), threads=args.threads, allow_spinning=True
        )
        result["ort"] = {"session": engine.session_settings}
        peak_before = sgemm_peak(args.threads)
        rng = np.random.default_rng(0)
        by_batch: dict[str, Any] = {}
        for batch in args.batches:
            x = rng.standard_normal((batch, 3, *size)).astype(np.float32)
            tx = torch.from_numpy(x)

            def torch_run(tx: Any = tx) -> None:
                with torch.inference_mode():
                    head(tx)

            stats = interleaved(
                {
                    "ort": lambda x=x: engine.run_outputs(x, ["logits", "cam", "features"]),
                    "ort_spinning": lambda x=x: spinning.run_outputs(x, ["logits", "cam", "features"]),
                    "torch_eager": torch_run,
                },
                batch,
                args.repeat,
            )
            best_ort = max(stats["ort"]["images_per_s"], stats["ort_spinning"]["images_per_s"])
            stats["ort_over_torch"] = round(best_ort / stats["torch_eager"]["images_per_s"], 2)
            by_batch[str(batch)] = stats
        peak = max(peak_before, sgemm_peak(args.threads))
        for stats in by_batch.values():
            for name in ("ort", "ort_spinning", "torch_eager"):
                gflops = 2 * macs * stats[name]["images_per_s"] / 1e9
                stats[name]["gflop_per_s"] = round(gflops, 1)
                stats[name]["share_of_sgemm_peak"] = round(gflops / peak, 3)
        result["sgemm_peak_gflop_per_s"] = round(peak, 1)
        result["by_batch"] = by_batch

        if not args.no_int8:
            from app.synth import generate_dataset
            from app.training.variants import make_variant

            data = Path(scratch) / "parity-data"
            generate_dataset(data, n_patients=args.parity_patients, seed=21, images_per_patient=(4, 4))
            entry = make_variant(model_dir, "int8", data)
            parity = {k: v for k, v in entry["parity"].items() if k != "data"}
            record: dict[str, Any] = {"parity": parity, "calibration_images": entry["calibration_images"]}
            if parity["passed"]:
                int8 = InferenceEngine(model_dir, device="cpu", threads=args.threads, precision="int8")
                int8_spin = InferenceEngine(
                    model_dir, device="cpu", threads=args.threads, precision="int8", allow_spinning=True
                )
                x = rng.standard_normal((8, 3, *size)).astype(np.float32)
                stats = interleaved(
                    {
                        "fp32": lambda: spinning.run_outputs(x, ["logits", "cam", "features"]),
                        "int8": lambda: int8_spin.run_outputs(x, ["logits", "cam", "features"]),
                        "int8_no_spinning": lambda: int8.run_outputs(x, ["logits", "cam", "features"]),
                    },
                    8,
                    args.repeat,
                )
                stats["int8_over_fp32"] = round(
                    stats["int8"]["images_per_s"] / stats["fp32"]["images_per_s"], 2
                )
                record["batch_8"] = stats
            result["int8"] = record
    result["load_avg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
