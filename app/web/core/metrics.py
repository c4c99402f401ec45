"""Prometheus metrics, all named ``fetalcns_*`` (served by app.web.api.metrics and, for a
``fetalcns worker``, on its ``--metrics-port``).

Two kinds, because web and worker processes are separate:
- what the database says, the same from every process, read at each scrape (``DatabaseCollector``):
  analyses by status (queued = the queue depth), running analyses whose lease expired;
- what this process did, counted as it happens (``PROCESS``): analysis durations (histogram),
  images analysed (``rate()`` of it is images per second), analyses failed; and the model and
  provider this process loaded. Scrape each worker for these.

No label ever holds a patient value: only statuses, model names and providers.

Several web processes (``fetalcns serve --workers N``): each process writes its counts to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode), a directory of this run that
``serve`` empties before the processes start (app.web.core.metrics_dir); any process's
``/metrics`` then sums them, so the answer does not depend on which process the scrape reached. A
process marks itself dead when it stops (``process_stopped``). The variable must be set before
prometheus_client is imported, so ``serve`` sets it in the parent, before the processes start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.web.core.metrics_dir import multiprocess_dir
from app.web.core.models import ANALYSIS_STATUSES, Analysis

# This process's own counts; one registry per process, shared by every app built in it.
PROCESS = CollectorRegistry(auto_describe=True)
ANALYSIS_SECONDS = Histogram(
    "fetalcns_analysis_duration_seconds",
    "Time from claim to stored result of one analysis, in this process",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
    registry=PROCESS,
)
IMAGES_ANALYSED = Counter(
    "fetalcns_images_analysed",
    "Images analysed (with a result or an image error) in this process",
    registry=PROCESS,
)
ANALYSES_FINISHED = Counter(
    "fetalcns_analyses_finished",
    "Analyses finished in this process, by outcome",
    ["outcome"],
    registry=PROCESS,
)

MODEL_BATCHES = Counter(
    "fetalcns_model_batches",
    "Batches of images run through the model in this process; with images_analysed, the images per "
    "batch (several studies' images share a batch when they are queued together)",
    registry=PROCESS,
)


WEB_PROCESSES = Gauge(
    "fetalcns_web_processes",
    "Web server processes running (summed over the live processes of `serve --workers N`)",
    multiprocess_mode="livesum",
    registry=PROCESS,
)


def process_started() -> None:
    """A web app started serving in this process (its lifespan)."""
    WEB_PROCESSES.inc()


def process_stopped() -> None:
    """A web app stopped: in multiprocess mode its live gauges leave the sums."""
    WEB_PROCESSES.dec()
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())


def record_analysis(seconds: float, n_images: int, outcome: str) -> None:
    """Called by the worker once an analysis's outcome is stored ("done" or "failed")."""
    ANALYSIS_SECONDS.observe(seconds)
    IMAGES_ANALYSED.inc(n_images)
    ANALYSES_FINISHED.labels(outcome=outcome).inc()


def record_model_batches(count: int) -> None:
    """Called by the worker for each group of images it scored: ``count`` model batches ran."""
    MODEL_BATCHES.inc(count)


class DatabaseCollector(Collector):
    """Counts read from the database at each scrape, plus the model this process serves."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Any]:
        from app.web.services import leases

        by_status = GaugeMetricFamily(
            "fetalcns_analyses", "Analyses by status (queued is the queue depth)", labels=["status"]
        )
        with self.runtime.session_factory() as db:
            counts = dict(db.execute(select(Analysis.status, func.count()).group_by(Analysis.status)).all())
            expired = len(leases.expired(db))
        for status in ANALYSIS_STATUSES:
            by_status.add_metric([status], float(counts.get(status, 0)))
        yield by_status
        yield GaugeMetricFamily(
            "fetalcns_analyses_lease_expired",
            "Running analyses whose worker stopped renewing the lease (taken again soon)",
            value=float(expired),
        )
        card = self.runtime.model_card
        model = InfoMetricFamily("fetalcns_model", "The model and inference provider of this process")
        model.add_metric(
            [],
            {
                "name": card.name if card else "",
                "version": card.version if card else "",
                "provider": self.runtime.inference.provider if self.runtime.inference else "",
            },
        )
        yield model


def _process_registry() -> CollectorRegistry:
    """This process's counts, or in multiprocess mode every process's, summed from their files."""
    path = multiprocess_dir()
    if path is None:
        return PROCESS
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=str(path))
    return registry


def render(runtime: Any | None) -> bytes:
    """The text exposition of this process's metrics (and the database's, given a runtime)."""
    from prometheus_client import generate_latest

    body = generate_latest(_process_registry())
    if runtime is not None:
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(DatabaseCollector(runtime))
        body += generate_latest(scrape)
    return body
