"""`fetalcns worker`: a GPU or CPU analysis worker that shares only the database, the broker and
the storage with the web processes.

It loads the model once on its device (``--device cuda:N`` picks one GPU of several: run one
worker per GPU), consumes analysis messages with ``--concurrency`` threads (app.web.services.
task_queue), runs each message's analysis together with up to ``--batch-studies`` - 1 others
waiting in the database, so that their images share the model's batches (AnalysisWorker.
process_with_waiting), and re-sends analyses whose worker died (app.web.services.lease_reaper).
SIGTERM or SIGINT stops it: the analyses in flight get ``--grace-s`` to finish; one that does
not is taken again by another worker when its lease expires.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _worker(args: argparse.Namespace) -> int:
    import dramatiq

    from app.web.cli import _say_locations, _settings
    from app.web.runtime import build_runtime, check_schema, load_inference
    from app.web.services.analysis_worker import AnalysisWorker
    from app.web.services.lease_reaper import LeaseReaper
    from app.web.services.task_queue import analysis_message, declare_analysis_actor, make_broker

    settings = _settings()
    if args.device:
        settings = settings.model_copy(update={"inference_device": args.device})
    if args.precision:
        settings = settings.model_copy(update={"inference_precision": args.precision})
    batch_studies = settings.worker_study_batch if args.batch_studies is None else args.batch_studies
    if batch_studies < 1:
        return _refuse("--batch-studies must be at least 1")
    if not settings.broker_url:
        return _refuse("FETALCNS_BROKER_URL is not set; without a broker `fetalcns serve` analyses itself")
    _say_locations(settings, ("database", "storage", "model", "broker"))
    runtime = build_runtime(settings)
    check_schema(runtime)
    if runtime.schema_error:
        return _refuse(runtime.schema_error)
    load_inference(runtime)
    if runtime.inference is None:
        return _refuse(runtime.inference_error or "the model could not be loaded")
    print(f"  {'device:':<10}{runtime.inference.provider} ({settings.inference_device})", file=sys.stderr)

    broker = make_broker(settings.broker_url, lease_s=settings.worker_lease_s)
    analyses = AnalysisWorker(runtime)
    analyses.pool.warm_up()

    def process(analysis_id: int) -> bool:
        return analyses.process_with_waiting(analysis_id, batch_studies)

    declare_analysis_actor(broker, settings.broker_queue, process)
    consumer = dramatiq.Worker(broker, worker_threads=args.concurrency)
    # Take no more messages than threads: a waiting message is another worker's to run.
    consumer.queue_prefetch = args.concurrency

    def send(analysis_id: int) -> None:
        broker.enqueue(analysis_message(settings.broker_queue, analysis_id))

    reaper = LeaseReaper(runtime.session_factory, send, settings.worker_poll_s)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the analyses in flight", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.metrics_port:
        from prometheus_client import start_http_server

        from app.web.core.metrics import PROCESS

        # Loopback only: a scraper on this host (or a tunnel) reads it; no patient data in it.
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=PROCESS)
    consumer.start()
    reaper.start()
    log.info(
        "worker ready: queue %s, %d threads, up to %d studies per batch",
        settings.broker_queue,
        args.concurrency,
        batch_studies,
    )
    try:
        stop.wait()
    finally:
        reaper.stop()
        consumer.stop(timeout=int(args.grace_s * 1000))
        analyses.close()
        broker.close()
        runtime.db_engine.dispose()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    worker = subparsers.add_parser(
        "worker", help="run analyses from the broker (FETALCNS_BROKER_URL) on this machine's CPU or one GPU"
    )
    worker.add_argument(
        "--device", default=None, help="auto, cpu, cuda or cuda:N (default FETALCNS_INFERENCE_DEVICE)"
    )
    worker.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "int8", "fp16"),
        help="the model variant to run (default FETALCNS_INFERENCE_PRECISION, fp32)",
    )
    worker.add_argument(
        "--concurrency", type=int, default=1, help="analyses run at once (threads; default 1)"
    )
    worker.add_argument(
        "--batch-studies",
        type=int,
        default=None,
        metavar="K",
        help="analyses run together, their images sharing the model's batches: each message's own "
        "and up to K-1 others waiting (default FETALCNS_WORKER_STUDY_BATCH, 8; 1: one at a time)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve this worker's Prometheus metrics on 127.0.0.1:PORT/metrics (default: none)",
    )
    worker.add_argument(
        "--grace-s", type=float, default=60.0, help="at SIGTERM, how long analyses in flight may finish"
    )
    worker.set_defaults(handler=_worker)
