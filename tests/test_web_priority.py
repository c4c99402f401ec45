"""The in-process worker's analysis runs below the request threads (FETALCNS_WORKER_NICE): its
thread's Linux nice value, and that of threads started in a lowered thread (ONNX Runtime's
intra-op pool is started by the model load), read back from the kernel."""

from __future__ import annotations

import sys
import threading

import pytest
from web_support import db_url, web  # noqa: F401

from app.web.core.priority import call_lowered, thread_nice

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")


def _nice_of_a_thread_started_here() -> int:
    seen: list[int] = []
    child = threading.Thread(target=lambda: seen.append(thread_nice()))
    child.start()
    child.join()
    return seen[0]


def test_a_lowered_call_runs_lower_and_its_threads_inherit_it() -> None:
    base = thread_nice()
    if base > 19 - 5:
        pytest.skip("this test process already runs at the lowest priority")
    assert call_lowered(5, thread_nice) == base + 5
    assert call_lowered(5, _nice_of_a_thread_started_here) == base + 5
    assert call_lowered(0, thread_nice) == base
    assert thread_nice() == base  # the caller's own priority is untouched
    with pytest.raises(ZeroDivisionError):
        call_lowered(5, lambda: 1 / 0)


@pytest.mark.parametrize("nice", [0, 7])
def test_the_in_process_worker_thread_is_lowered(web, nice: int) -> None:  # noqa: F811
    base = thread_nice()
    if base + nice > 19:
        pytest.skip("this test process already runs at the lowest priority")
    h = web(worker_nice=nice)
    worker_thread = h.runtime.worker._thread
    assert worker_thread is not None and worker_thread.native_id is not None
    assert thread_nice(worker_thread.native_id) == base + nice
    # The request threads keep the process's priority.
    assert h.client.get("/health").status_code == 200
    assert thread_nice() == base
