"""GET /health (public): model, inference provider, database, worker and broker state.

Anyone can read it, so it names the model (name and version) but never a file system path or an
exception's text: why a model failed to load is in the server log, for the operator.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.web.api.contract import ANY, errors
from app.web.deps import RuntimeDep
from app.web.runtime import Runtime
from app.web.schemas import HealthOut
from app.web.services.broker_health import broker_state

router = APIRouter(tags=["health"])
MODEL_UNAVAILABLE = "the model could not be loaded; the server log says why"
# A broker that does not answer within this makes the answer "degraded", not slow.
BROKER_TIMEOUT_S = 1.0


def health_report(runtime: Runtime) -> HealthOut:
    try:
        with runtime.db_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = runtime.schema_error or "ok"
    except Exception as exc:
        database = f"unavailable: {type(exc).__name__}"
    card = runtime.model_card
    worker = "off" if runtime.worker is None else ("running" if runtime.worker.running else "stopped")
    broker_url = runtime.settings.broker_url
    broker = broker_state(broker_url, BROKER_TIMEOUT_S) if broker_url else None
    ok = database == "ok" and card is not None and broker in (None, "ok")
    return HealthOut(
        status="ok" if ok else "degraded",
        model={"name": card.name, "version": card.version} if card else None,
        provider=runtime.inference.provider if runtime.inference is not None else None,
        database=database,
        worker=worker,
        broker=broker,
        detail=runtime.schema_error or (MODEL_UNAVAILABLE if runtime.inference_error else None),
    )


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Server health (public)",
    response_description="the server can answer; `status` says whether the model is loaded",
    responses={
        503: {"model": HealthOut, "description": "The database is unavailable (the same body)."},
        **errors(*ANY),
    },
)
def health(runtime: RuntimeDep) -> JSONResponse:
    """Whether the database answers and a model is loaded, which inference provider runs,
    whether the analysis worker runs and, with a broker, whether it answers. For load balancers:
    200 while the database answers (a web process without its broker still serves the pages, and
    analyses it could not send are sent again once the broker is back)."""
    report = health_report(runtime)
    # Load balancers only need a status code: 503 when the database is down.
    code = 200 if report.database == "ok" else 503
    return JSONResponse(report.model_dump(), status_code=code)
