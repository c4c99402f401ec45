"""Lower the CPU priority of one thread (Linux), so that analysis in a web process yields to requests.

On Linux the nice value belongs to each thread and a new thread starts with its creator's. A web
process that also analyses (the in-process worker, no broker) lowers its analysis thread, and
loads the model in a lowered thread so that ONNX Runtime's intra-op threads, made there, inherit
it: the kernel then gives the request threads the cores first and the analysis the rest, instead
of half each (docs/deployment.md, "Latency"). Elsewhere, or when the system refuses, nothing changes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def lower_this_thread(nice: int) -> bool:
    """Add ``nice`` (0-19) to the calling thread's nice value; True when it was applied."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError as exc:  # a sandbox may forbid it; the analysis then only runs at full priority
        log.warning("could not lower the analysis thread's priority: %s", exc)
        return False
    return True


def thread_nice(tid: int | None = None) -> int:
    """The nice value of a thread (default: the calling one)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id() if tid is None else tid)


def call_lowered(nice: int, work: Callable[[], T]) -> T:
    """``work()`` run in a new thread lowered by ``nice``; its result or its exception, here.

    Threads that ``work`` starts (ONNX Runtime's pool) keep the lowered priority."""
    if nice <= 0:
        return work()
    box: dict[str, object] = {}

    def run() -> None:
        lower_this_thread(nice)
        try:
            box["result"] = work()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="lowered-priority")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
