"""The directory where the processes of one `fetalcns serve` run write their metric counts
(prometheus_client's multiprocess mode, app.web.core.metrics).

No prometheus_client import here: in multiprocess mode it opens this process's count files as it
is imported, and ``serve`` must empty the directory before that happens, not after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def start_multiprocess_run() -> tuple[Path, bool]:
    """For `serve`, before the server processes start: the directory of their metric files,
    emptied (a previous run's counts and dead processes' gauges would otherwise be summed in), and
    set in the environment the processes inherit. ``PROMETHEUS_MULTIPROC_DIR`` when the operator
    set it, else a new temporary one; returns it and whether it was made here (remove it after)."""
    given = multiprocess_dir()
    path = given or Path(tempfile.mkdtemp(prefix="fetalcns-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path, given is None


def end_multiprocess_run(path: Path, made_here: bool) -> None:
    if made_here:
        shutil.rmtree(path, ignore_errors=True)
