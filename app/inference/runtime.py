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
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
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


def choose_providers(device: str) -> list[str]:
    device, _ = split_device(device)
    cuda_usable = CUDA in ort.get_available_providers() and gpu_present()
    if device == "cuda" and not cuda_usable:
        raise EngineError("device 'cuda' was requested but no usable NVIDIA GPU was found")
    if device in ("auto", "cuda") and cuda_usable:
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


def _create_session(key: SessionKey) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_LOG_ERRORS_ONLY
    options.intra_op_num_threads = key.intra_op_threads
    options.inter_op_num_threads = key.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        provider_options = [{"device_id": str(key.device_id)} if p == CUDA else {} for p in key.providers]
        return ort.InferenceSession(
            key.onnx_path,
            sess_options=options,
            providers=list(key.providers),
            provider_options=provider_options,
        )
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        if CUDA in key.providers:
            # A GPU without matching CUDA/cuDNN libraries: serve on CPU rather than not at all.
            log.warning("CUDA session failed (%s); falling back to CPU", type(exc).__name__)
            return ort.InferenceSession(key.onnx_path, sess_options=options, providers=[CPU])
        raise EngineError(f"the model file {key.onnx_path} cannot be loaded: {exc}") from exc


def clear_sessions() -> None:
    """Drop cached sessions (tests, or after replacing a model file)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()
