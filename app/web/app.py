"""The FastAPI application: ``create_app(settings)`` wires runtime, middleware, routers and
the error handlers that turn ServiceError (and every other failure) into JSON or an HTML page.

``uvicorn app.main:app`` (or ``fetalcns serve``) serves an app built from the environment's settings.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cli import package_version
from app.logsafe import redacted_traceback
from app.web.api import router as api_router
from app.web.api.docs import router as docs_router
from app.web.core import metrics
from app.web.core.auth import LoginRequired, NotAuthenticated
from app.web.core.csrf import CSRFCookieMiddleware, CSRFRejected
from app.web.core.headers import SecurityHeadersMiddleware
from app.web.core.input_guard import ControlCharacterGuard
from app.web.core.limits import RequestSizeLimitMiddleware
from app.web.core.paths import project_dir
from app.web.errors import ServiceError, TooManyAttempts
from app.web.pages import csrf_rejected_page
from app.web.pages import router as pages_router
from app.web.runtime import Runtime, build_runtime, check_schema, load_inference, sweep_at_start
from app.web.settings import Settings, get_settings

log = logging.getLogger(__name__)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _error_response(
    request: Request, status_code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """JSON {detail} for the API and scripts; a small HTML page for browsers."""
    response = _error_body(request, status_code, message)
    response.headers.update(headers or {})
    return response


def _error_body(request: Request, status_code: int, message: str) -> Response:
    if _wants_html(request):
        from app.web.core.templating import templates

        try:
            return templates.TemplateResponse(
                request,
                "error.html",
                {"status_code": status_code, "message": message},
                status_code=status_code,
            )
        except Exception:  # the front end's error template may not exist yet
            from html import escape

            return HTMLResponse(
                f"<h1>Error {status_code}</h1><p>{escape(message)}</p>", status_code=status_code
            )
    headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
    return JSONResponse({"detail": message}, status_code=status_code, headers=headers)


def _readable_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form"))
        if error.get("type") == "literal_error" and where:
            # A closed set (an enum in the OpenAPI document): say which values are allowed.
            parts.append(f"{where} must be one of {error.get('ctx', {}).get('expected', '')}")
            continue
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "invalid request — " + "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        if isinstance(exc, NotAuthenticated) and _wants_html(request):
            return RedirectResponse(LoginRequired(request.url.path).login_url, status_code=303)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, TooManyAttempts) else None
        return _error_response(request, exc.status_code, exc.message, headers)

    @app.exception_handler(CSRFRejected)
    async def csrf_rejected(request: Request, exc: CSRFRejected) -> Response:
        return csrf_rejected_page(request, exc) or _error_response(request, exc.status_code, exc.message)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(exc.login_url, status_code=303)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request, 422, _readable_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_response(request, exc.status_code, str(exc.detail))


class UnexpectedErrorMiddleware:
    """Any exception no handler took becomes a 500 answer here, and is logged once, redacted.

    Not an ``exception_handler(Exception)``: Starlette re-raises after such a handler, so the
    server logged the full exception text (SQL parameters with patient data included) and
    dropped the keep-alive connection, and the client's next request on it was reset.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # The path holds ids only; the exception's message may hold anything.
            log.error(
                "unexpected error on %s %s\n%s", scope["method"], scope["path"], redacted_traceback(exc)
            )
            if started:
                raise
            request = Request(scope)
            message = "something went wrong on the server; the error was logged"
            await _error_response(request, 500, message)(scope, receive, send)


def _card_banner(runtime: Runtime) -> Callable[[], str | None]:
    """The loaded model card's warning ("not for clinical use ..."), read when a report is made."""
    return lambda: runtime.model_card.banner if runtime.model_card is not None else None


def _start_dicom_listener(runtime: Runtime) -> Any:
    """The C-STORE listener inside the server (FETALCNS_DICOM_LISTENER); a failure to start it
    (port taken, bad allow-list entry) is logged and the web app still serves."""
    settings = runtime.settings
    if not settings.dicom_listener or runtime.schema_error is not None:
        return None
    from app.web.dicom.cli import start_listener

    try:
        return start_listener(
            runtime, settings.dicom_host, settings.dicom_port, settings.dicom_ae_title, [settings.dicom_allow]
        )
    except (ValueError, OSError) as exc:
        log.error("the DICOM listener did not start: %s", exc)
        return None


def create_app(settings: Settings | None = None, *, load_model: bool = True) -> FastAPI:
    """Build the app. The model is loaded and the worker started in the lifespan (startup).

    ``load_model=False`` skips loading the model (health then reports "degraded").
    """
    settings = settings or get_settings()
    runtime: Runtime = build_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_schema(runtime)
        if settings.sweep_on_start and runtime.schema_error is None:
            sweep_at_start(runtime)
        analyses_here = not settings.broker_url and settings.worker_enabled
        if load_model:
            # Analysing beside the pages: the analysis gets the cores the requests leave.
            load_inference(runtime, settings.worker_nice if analyses_here else 0)
        if settings.broker_url:
            # Web processes only send; `fetalcns worker` processes analyse (docs/deployment.md).
            from app.web.services.task_queue import BrokerQueue

            runtime.worker = BrokerQueue(settings.broker_url, settings.broker_queue, settings.worker_lease_s)
        elif settings.worker_enabled and runtime.inference is not None and runtime.schema_error is None:
            from app.web.services.analysis_worker import AnalysisWorker

            runtime.worker = AnalysisWorker(runtime)
            runtime.worker.start()
        listener = _start_dicom_listener(runtime)
        pusher = None
        if settings.pacs_host and runtime.schema_error is None:
            from app.web.dicom.push import ResultPusher

            pusher = ResultPusher(runtime, _card_banner(runtime))
            pusher.start()
        metrics.process_started()
        try:
            yield
        finally:
            metrics.process_stopped()
            if pusher is not None:
                pusher.stop()
            if listener is not None:
                listener.stop()
            if runtime.worker is not None:
                runtime.worker.stop()
                runtime.worker = None
            runtime.db_engine.dispose()

    app = FastAPI(
        title="fetalcns",
        summary="Decision support for fetal CNS anomalies on prenatal ultrasound",
        version=package_version(),
        lifespan=lifespan,
        # Served from static/vendor by app.web.api.docs: no CDN on an air-gapped network.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.runtime = runtime
    from app.web.dicom.results import make_result_provider

    # Results (SR, SC, PDF) join their study in DICOMweb; the PDF carries the card's warning.
    app.state.dicom_result_providers = [make_result_provider(_card_banner(runtime))]
    _install_error_handlers(app)
    app.add_middleware(CSRFCookieMiddleware, secure_always=settings.secure_cookies)
    app.add_middleware(RequestSizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(ControlCharacterGuard, respond=_error_response)
    app.add_middleware(UnexpectedErrorMiddleware)
    # Outermost, so that error answers carry the headers too.
    app.add_middleware(SecurityHeadersMiddleware, https_always=settings.secure_cookies)
    app.include_router(docs_router)
    app.include_router(api_router)
    app.include_router(pages_router)
    static = project_dir("static")
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
    return app
