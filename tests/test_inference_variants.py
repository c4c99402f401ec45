"""Faster model variants (`fetalcns export --quantize`): int8 and fp16 files beside model.onnx, a
parity check against fp32 on held-out patients recorded in the card, serving that refuses a
variant that failed it; and the provider choice for CPUs and GPUs (TensorRT, cuda:N)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.inference.engine import InferenceEngine
from app.inference.runtime import (
    CPU,
    CUDA,
    TENSORRT,
    EngineError,
    SessionKey,
    choose_providers,
    provider_options,
)
from app.modelcard import load_model_card, sha256_of
from app.training.variants import load_patients, make_variant, split_patients

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.synth import generate_dataset

    out = tmp_path_factory.mktemp("variant-data")
    generate_dataset(out, n_patients=6, seed=5, images_per_patient=(3, 3))
    return out


@pytest.fixture
def model_dir(demo_model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(demo_model_dir, copy)
    return copy


def _held_out_images(data_dir: Path) -> list[Path]:
    patients = load_patients(data_dir)
    _, held_out = split_patients(patients)
    return [path for p in held_out for path in patients[p]]


def test_patients_split_every_third_to_calibration(data_dir: Path) -> None:
    patients = load_patients(data_dir)
    calibration, held_out = split_patients(patients)
    ids = sorted(patients)
    assert calibration == ids[0::3] and set(held_out) == set(ids) - set(calibration)
    assert all(len(patients[p]) == 3 for p in ids)


def test_int8_variant_is_recorded_and_its_parity_matches_a_direct_comparison(
    model_dir: Path, data_dir: Path
) -> None:
    fp32_sha = sha256_of(model_dir / "model.onnx")
    entry = make_variant(model_dir, "int8", data_dir, max_prob_diff=1.0)
    card = load_model_card(model_dir)
    assert card.raw["onnx"]["variants"]["int8"] == entry
    assert sha256_of(model_dir / "model.onnx") == fp32_sha == card.sha256  # fp32 untouched
    assert entry["sha256"] == sha256_of(model_dir / "model.int8.onnx")
    parity = entry["parity"]
    assert parity["held_out_patients"] == 4 and parity["images"] == 12
    assert parity["patient_verdict_agreement"] == 1.0 and parity["passed"]
    assert entry["quantized_convolutions"] > 30 and entry["calibration_images"] == 6

    # The recorded difference, recomputed with the engines' own predict on the same images.
    from app.training.variants import _images

    images = _images(_held_out_images(data_dir))
    fp32 = InferenceEngine(model_dir, device="cpu").predict(images)
    int8_engine = InferenceEngine(model_dir, device="cpu", precision="int8")
    assert int8_engine.session_settings["precision"] == "int8"
    int8 = int8_engine.predict(images)
    largest = max(
        float(np.abs(a.probabilities - b.probabilities).max()) for a, b in zip(fp32, int8, strict=True)
    )
    assert largest == pytest.approx(parity["max_prob_diff"], abs=1e-9)
    assert 0 < largest < 0.2


def test_a_variant_that_failed_parity_is_refused_and_the_cli_says_so(model_dir: Path, data_dir: Path) -> None:
    command = [
        sys.executable, "-m", "app.cli", "export", "--quantize", "int8", "--out", str(model_dir),
        "--quantize-data", str(data_dir), "--max-prob-diff", "0",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 1, done.stderr
    assert "FAILED" in done.stdout and "bound 0.0" in done.stdout
    assert (
        json.loads((model_dir / "model.json").read_text())["onnx"]["variants"]["int8"]["parity"]["passed"]
        is False
    )
    with pytest.raises(EngineError, match="failed its parity check"):
        InferenceEngine(model_dir, device="cpu", precision="int8")
    with pytest.raises(EngineError, match="no fp16 variant"):
        InferenceEngine(model_dir, device="cpu", precision="fp16")


def test_fp16_variant_stays_within_one_hundredth_on_the_cpu(model_dir: Path, data_dir: Path) -> None:
    entry = make_variant(model_dir, "fp16", data_dir)
    parity = entry["parity"]
    assert parity["passed"] and parity["max_prob_diff"] <= 1e-2 and parity["max_prob_diff_bound"] == 0.01
    engine = InferenceEngine(model_dir, device="cpu", precision="fp16")
    assert engine.provider == CPU
    from app.training.variants import _images

    images = _images(_held_out_images(data_dir)[:3])
    for a, b in zip(
        InferenceEngine(model_dir, device="cpu").predict(images), engine.predict(images), strict=True
    ):
        assert a.label == b.label and np.abs(a.probabilities - b.probabilities).max() <= 1e-2


def test_a_tampered_variant_file_is_refused(model_dir: Path, data_dir: Path) -> None:
    make_variant(model_dir, "fp16", data_dir)
    with (model_dir / "model.fp16.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(EngineError, match="does not match its card"):
        InferenceEngine(model_dir, device="cpu", precision="fp16")


def test_providers_by_machine() -> None:
    gpu_build = (TENSORRT, CUDA, CPU)
    # No GPU (this machine's case in CI): the CPU only, whatever is asked short of "cuda".
    assert choose_providers("auto", available=gpu_build, gpu=False) == [CPU]
    assert choose_providers("auto", tensorrt=True, available=gpu_build, gpu=False) == [CPU]
    with pytest.raises(EngineError, match="no usable NVIDIA GPU"):
        choose_providers("cuda:1", available=gpu_build, gpu=False)
    with pytest.raises(EngineError, match="no usable NVIDIA GPU"):
        choose_providers("cuda", available=(CPU,), gpu=True)
    # A GPU: CUDA first, TensorRT before it when asked and built in; "cpu" stays on the CPU.
    assert choose_providers("auto", available=gpu_build, gpu=True) == [CUDA, CPU]
    assert choose_providers("cuda:1", tensorrt=True, available=gpu_build, gpu=True) == [TENSORRT, CUDA, CPU]
    assert choose_providers("cuda", tensorrt=True, available=(CUDA, CPU), gpu=True) == [CUDA, CPU]
    assert choose_providers("cpu", tensorrt=True, available=gpu_build, gpu=True) == [CPU]
    with pytest.raises(EngineError, match="unknown device"):
        choose_providers("tpu", available=gpu_build, gpu=True)


def test_provider_options_name_the_gpu_and_the_engine_cache(tmp_path: Path) -> None:
    key = SessionKey(
        "m.onnx", "0" * 64, (TENSORRT, CUDA, CPU), 2, 1, device_id=3,
        tensorrt_cache=str(tmp_path / "trt"), tensorrt_fp16=True,
    )  # fmt: skip
    trt, cuda, cpu = provider_options(key)
    assert trt == {
        "device_id": "3",
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path / "trt"),
    }
    assert cuda == {"device_id": "3"} and cpu == {}
    assert key.settings()["graph_optimization_level"] == "all" and key.settings()["allow_spinning"] is False


def test_the_gpu_benchmark_says_why_it_cannot_run_on_a_machine_without_a_gpu() -> None:
    from app.inference.runtime import gpu_present

    if gpu_present():
        pytest.skip("this machine has a GPU: benchmarks/gpu.sh runs for real there")
    done = subprocess.run(
        [str(REPO / "benchmarks" / "gpu.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    assert report["gpu"] is False and "no usable NVIDIA GPU" in report["reason"]
    assert report["machine"]["cores"] >= 1 and len(report["machine"]["load_avg_1_5_15"]) == 3
