"""`fetalcns dicom-listener`: the C-STORE listener on its own (``serve`` runs it inside the web
server when FETALCNS_DICOM_LISTENER is set).

Options override the FETALCNS_DICOM_* settings. The listener analyses what it receives with its
own worker (FETALCNS_WORKER_ENABLED, on by default); the web server's worker, which polls the
database, would pick the analyses up too.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)


def start_listener(runtime: Any, host: str, port: int, ae_title: str, allow: list[str]) -> Any:
    """Parse the allow-list and start a listener over ``runtime``; raises ValueError on a bad entry."""
    from app.web.dicom.allowlist import parse_allow
    from app.web.dicom.scp import DicomListener

    listener = DicomListener(runtime, host, port, ae_title, parse_allow(allow))
    listener.start()
    return listener


def _dicom_listener(args: argparse.Namespace) -> int:
    from app.web.cli import _say_locations, _settings
    from app.web.runtime import build_runtime, check_schema, load_inference

    settings = _settings()
    _say_locations(settings)
    runtime = build_runtime(settings)
    check_schema(runtime)
    if runtime.schema_error:
        print(f"error: {runtime.schema_error}", file=sys.stderr)
        return 1
    if settings.worker_enabled and not args.no_worker:
        load_inference(runtime)
        if runtime.inference is not None:
            from app.web.services.analysis_worker import AnalysisWorker

            runtime.worker = AnalysisWorker(runtime)
            runtime.worker.start()
    allow = args.allow if args.allow else [settings.dicom_allow]
    try:
        listener = start_listener(
            runtime,
            args.host or settings.dicom_host,
            args.port if args.port is not None else settings.dicom_port,
            args.ae_title or settings.dicom_ae_title,
            allow,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if runtime.worker is not None:
            runtime.worker.stop()
        return 1
    print(f"listening as {listener.ae_title} on {listener.host}:{listener.port}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    listener.stop()
    if runtime.worker is not None:
        runtime.worker.stop()
    runtime.db_engine.dispose()
    print(f"stopped; {listener.stats}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    listen = subparsers.add_parser(
        "dicom-listener", help="receive studies over DICOM (C-STORE SCP) and analyse them"
    )
    listen.add_argument("--host", default=None, help="address to bind (default FETALCNS_DICOM_HOST)")
    listen.add_argument("--port", type=int, default=None, help="port (default FETALCNS_DICOM_PORT, 11112)")
    listen.add_argument(
        "--ae-title", default=None, help="this listener's AE title (default FETALCNS_DICOM_AE_TITLE)"
    )
    listen.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="AE[@HOST]",
        help="a calling AE title allowed to send, optionally only from HOST; repeat for more "
        "(default FETALCNS_DICOM_ALLOW); nobody else is accepted",
    )
    listen.add_argument(
        "--no-worker", action="store_true", help="store only; let the web server's worker analyse"
    )
    listen.set_defaults(handler=_dicom_listener)
