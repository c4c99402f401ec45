"""One image → everything the model and the gate need before inference, as a picklable value.

``prepare_image`` is a pure function of the card's preprocessing spec and one image: the crop
box, the model input, and the pixel-level flags (blank frame, not an ultrasound image, lossy
input). It runs in the calling thread (``fetalcns predict``) or in a process pool
(``PreparePool``, the web worker): its answer is small enough to send between processes, and the
full-size pixels stay in the process that decoded them. ``prepare_stored`` does the same from a
stored display image's encoded bytes, so a pool process also decodes.

Each answer carries the seconds its stages took, which the worker sums into an analysis's
timings and benchmarks/bench_pipeline.py reports.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import cv2
import numpy as np

from app.inference.image_kind import not_ultrasound_reason
from app.inference.scores import blank_frame_issue
from app.preprocess import (
    GREY_EXACT_INTERPOLATIONS,
    Box,
    PreprocessSpec,
    crop,
    ensure_rgb_uint8,
    normalize,
    resize,
    scan_box,
)

log = logging.getLogger(__name__)

# Every timing key a prepared image may carry, in pipeline order.
PREPARE_STAGES = ("decode_s", "crop_s", "preprocess_s", "flags_s")


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the model: the input tensor (C×H×W float32), the box it was cut from,
    the original geometry and the pixel-level flags."""

    tensor: np.ndarray
    box: Box
    image_shape: tuple[int, int]
    quality_issue: str | None
    not_ultrasound: str | None
    # The input's lossy compression as ingestion recorded it (None when lossless).
    lossy_compression: str | None
    timings: dict[str, float] = field(default_factory=dict, compare=False)


def prepare_pixels(
    pixels: np.ndarray,
    spec: PreprocessSpec,
    given_box: Box | None,
    metadata: Mapping[str, Any] | None,
    timings: dict[str, float] | None = None,
) -> PreparedImage:
    """Crop box, model input and flags of display pixels (the code ``to_model_input`` runs).

    An H×W uint8 grey plane (an image whose three channels are equal, as the upload keeps it)
    stands for that RGB image with the same answer: the box, the flags and the colour check read
    the plane itself, and it is resized once, not three times, where that gives the same input
    (GREY_EXACT_INTERPOLATIONS; otherwise its RGB version is resized).
    """
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    grey = pixels.ndim == 2 and pixels.dtype == np.uint8
    image = pixels if grey else ensure_rgb_uint8(pixels)
    box = scan_box(image, spec, given_box if spec.crop != "none" else None)
    t1 = time.perf_counter()
    source = image if not grey or spec.interpolation in GREY_EXACT_INTERPOLATIONS else ensure_rgb_uint8(image)
    tensor = normalize(resize(crop(source, box), spec.size, spec.interpolation), spec.mean, spec.std)
    t2 = time.perf_counter()
    quality = blank_frame_issue(image, box)
    not_us = not_ultrasound_reason(image, dict(metadata or {}))
    lossy = (metadata or {}).get("lossy_compression")
    t3 = time.perf_counter()
    timings.update(crop_s=t1 - t0, preprocess_s=t2 - t1, flags_s=t3 - t2)
    return PreparedImage(
        tensor=tensor,
        box=box,
        image_shape=(int(image.shape[0]), int(image.shape[1])),
        quality_issue=quality,
        not_ultrasound=not_us,
        lossy_compression=str(lossy) if lossy else None,
        timings=timings,
    )


def prepare_image(image: Any, spec: PreprocessSpec) -> PreparedImage:
    """``prepare_pixels`` of an ``app.ingest.IngestedImage``."""
    return prepare_pixels(image.pixels, spec, image.scan_box, image.metadata)


def decode_display(data: bytes) -> np.ndarray:
    """A stored display image (PNG) → H×W×3 RGB uint8; ValueError when it is unreadable."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("the stored image is unreadable")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def prepare_stored(
    data: bytes, spec: PreprocessSpec, given_box: Box | None, metadata: Mapping[str, Any] | None
) -> PreparedImage:
    """Decode a stored display image and prepare it (one pool task: bytes in, a small answer out)."""
    t0 = time.perf_counter()
    pixels = decode_display(data)
    timings = {"decode_s": time.perf_counter() - t0}
    return prepare_pixels(pixels, spec, given_box, metadata, timings)


def default_processes() -> int:
    """One preparing process per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _warm() -> int:
    return os.getpid()


# How often a preparing process checks that the process that started it is still alive.
PARENT_CHECK_S = 1.0


def _exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this process soon after its parent is gone. A parent killed outright
    (SIGKILL, the OOM killer: a worker killed mid-job) cannot shut its pool down, and the idle
    children would otherwise wait on their queue for ever, each holding its memory."""
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class PreparePool:
    """Decode and preprocessing of stored images in ``processes`` worker processes.

    Processes are spawned, never forked: the server that owns the pool runs threads (the web
    app, the lease heartbeat), and a forked child could inherit a lock held by one of them.
    ``processes=0`` prepares in the calling thread (no pool). When the processes cannot be
    started, or die (killed for memory), the work is done in the calling thread instead, with
    a warning: slower, never wrong. ``close`` ends the processes.
    """

    def __init__(self, processes: int | None = None) -> None:
        self.processes = default_processes() if processes is None else max(0, processes)
        self._executor: ProcessPoolExecutor | None = None
        if self.processes > 0:
            self._executor = ProcessPoolExecutor(
                self.processes,
                mp_context=get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )

    @property
    def pooled(self) -> bool:
        """True while the work goes to worker processes."""
        return self._executor is not None

    def warm_up(self) -> None:
        """Start every process now (each imports numpy and OpenCV once) rather than on first use."""
        if self._executor is not None:
            try:
                for future in [self._executor.submit(_warm) for _ in range(self.processes)]:
                    future.result()
            except (BrokenExecutor, OSError, RuntimeError) as exc:
                self._give_up(exc)

    def _give_up(self, exc: BaseException) -> None:
        log.warning("the preparing processes stopped (%s); preparing in this thread", type(exc).__name__)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def submit(
        self, data: bytes, spec: PreprocessSpec, given_box: Box | None, metadata: Mapping[str, Any] | None
    ) -> Future[PreparedImage]:
        """Prepare one stored image; the future raises what ``prepare_stored`` raised."""
        if self._executor is not None:
            try:
                return self._executor.submit(prepare_stored, data, spec, given_box, dict(metadata or {}))
            except (BrokenExecutor, OSError, RuntimeError) as exc:
                self._give_up(exc)
        future: Future[PreparedImage] = Future()
        try:
            future.set_result(prepare_stored(data, spec, given_box, metadata))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def result(
        self,
        future: Future[PreparedImage],
        data: bytes,
        spec: PreprocessSpec,
        given_box: Box | None,
        metadata: Mapping[str, Any] | None,
    ) -> PreparedImage:
        """The future's answer; when its process died, the same work done here (same arguments)."""
        try:
            return future.result()
        except BrokenExecutor as exc:
            self._give_up(exc)
            return prepare_stored(data, spec, given_box, metadata)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def stage_totals(prepared: Sequence[PreparedImage]) -> dict[str, float]:
    """The seconds each preparing stage took, summed over images (process time, not wall time)."""
    return {stage: float(sum(p.timings.get(stage, 0.0) for p in prepared)) for stage in PREPARE_STAGES}
