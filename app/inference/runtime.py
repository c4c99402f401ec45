"""ONNX Runtime sessions: provider choice and one cached session per model file and settings.

CUDA is requested only when a GPU is really there, because onnxruntime-gpu prints errors
when it tries to load CUDA libraries on a machine without one; on CPU machines only the
CPU provider is passed and ONNX Runtime's own logging is limited to errors.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
_ORT_LOG_ERRORS_ONLY = 3

ort.set_default_logger_severity(_ORT_LOG_ERRORS_ONLY)


class EngineError(RuntimeError):
    """The model cannot be loaded or run; the message says why in plain words."""


def gpu_present() -> bool:
    """True when an NVIDIA device node exists and the CUDA driver library loads."""
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def split_device(device: str) -> tuple[str, int]:
    """``cuda:N`` → ("cuda", N): one GPU of a host with several (``fetalcns worker --device``);
    any other device is itself with GPU 0."""
    kind, sep, index = device.partition(":")
    if sep and kind == "cuda" and index.isdigit():
        return kind, int(index)
    if sep or device not in DEVICES:
        raise EngineError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)} or cuda:N")
    return device, 0


def choose_providers(
    device: str,
    tensorrt: bool = False,
    available: tuple[str, ...] | None = None,
    gpu: bool | None = None,
) -> list[str]:
    """The execution providers to ask for, best first. ``tensorrt`` puts TensorRT before CUDA
    (engines built once and cached on disk); on a machine without a usable GPU it changes
    nothing. ``available`` and ``gpu`` default to this machine's (tests pass others)."""
    device, _ = split_device(device)
    available = tuple(ort.get_available_providers()) if available is None else available
    gpu = gpu_present() if gpu is None else gpu
    cuda_usable = CUDA in available and gpu
    if device == "cuda" and not cuda_usable:
        raise EngineError("device 'cuda' was requested but no usable NVIDIA GPU was found")
    if device in ("auto", "cuda") and cuda_usable:
        if tensorrt and TENSORRT in available:
            return [TENSORRT, CUDA, CPU]
        return [CUDA, CPU]
    return [CPU]


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class SessionKey:
    onnx_path: str
    sha256: str
    providers: tuple[str, ...]
    intra_op_threads: int
    inter_op_threads: int
    # Which GPU CUDA runs on (``cuda:N``); ignored on the CPU.
    device_id: int = 0
    # Intra-op threads spin while waiting for work. Off by default: a worker shares its cores with
    # the preparing processes and the web server, and spinning threads take their time.
    allow_spinning: bool = False
    # Where TensorRT keeps the engines it builds (minutes per model and GPU), so a restart reuses them.
    tensorrt_cache: str | None = None
    # TensorRT may build fp16 engines (for an fp16 variant it would anyway; for fp32, a speed choice).
    tensorrt_fp16: bool = False

    def settings(self) -> dict[str, object]:
        """What the session runs with, for the engine to report (metrics, benchmarks)."""
        return {
            "providers": list(self.providers),
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "execution_mode": "sequential",
            "graph_optimization_level": "all",
            "cpu_memory_arena": True,
            "memory_pattern": True,
            "allow_spinning": self.allow_spinning,
            "device_id": self.device_id,
            "tensorrt_cache": self.tensorrt_cache,
        }


_SESSIONS: dict[SessionKey, ort.InferenceSession] = {}
_SESSIONS_LOCK = threading.Lock()


def get_session(key: SessionKey) -> ort.InferenceSession:
    """The process-wide session for this model file and settings, created on first use."""
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _create_session(key)
            _SESSIONS[key] = session
        return session


def provider_options(key: SessionKey) -> list[dict[str, str]]:
    """Each provider's options: the GPU to run on, and TensorRT's engine cache."""
    options: list[dict[str, str]] = []
    for provider in key.providers:
        if provider == CUDA:
            options.append({"device_id": str(key.device_id)})
        elif provider == TENSORRT:
            entry = {"device_id": str(key.device_id), "trt_fp16_enable": str(key.tensorrt_fp16)}
            if key.tensorrt_cache:
                entry.update(trt_engine_cache_enable="True", trt_engine_cache_path=key.tensorrt_cache)
            options.append(entry)
        else:
            options.append({})
    return options


def session_options(key: SessionKey) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_LOG_ERRORS_ONLY
    options.intra_op_num_threads = key.intra_op_threads
    options.inter_op_num_threads = key.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The arena keeps the batch's buffers between runs and the memory pattern plans them once per
    # input shape: the worker's batches repeat a few shapes, so both pay off after the first run.
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if key.allow_spinning else "0")
    return options


def _create_session(key: SessionKey) -> ort.InferenceSession:
    options = session_options(key)
    if key.tensorrt_cache:
        Path(key.tensorrt_cache).mkdir(parents=True, exist_ok=True)
    try:
        return ort.InferenceSession(
            key.onnx_path,
            sess_options=options,
            providers=list(key.providers),
            provider_options=provider_options(key),
        )
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        if TENSORRT in key.providers:
            # TensorRT libraries missing or the graph refused: CUDA alone still serves on the GPU.
            log.warning("TensorRT session failed (%s); trying CUDA", type(exc).__name__)
            return _create_session(replace(key, providers=tuple(p for p in key.providers if p != TENSORRT)))
        if CUDA in key.providers:
            # A GPU without matching CUDA/cuDNN libraries: serve on CPU rather than not at all.
            log.warning("CUDA session failed (%s); falling back to CPU", type(exc).__name__)
            return ort.InferenceSession(key.onnx_path, sess_options=options, providers=[CPU])
        raise EngineError(f"the model file {key.onnx_path} cannot be loaded: {exc}") from exc


def clear_sessions() -> None:
    """Drop cached sessions (tests, or after replacing a model file)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()
