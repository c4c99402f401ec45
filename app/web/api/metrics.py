"""GET /metrics: Prometheus metrics (app.web.core.metrics), for the operator's scraper only.

Answered to clients on this host (a scraper beside the server, or through a proxy that does its
own checks) and to a request carrying ``Authorization: Bearer <FETALCNS_METRICS_TOKEN>``; anyone
else gets 404, as if there were nothing here. Not in the OpenAPI document: not a clinical API.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.web.core.metrics import render
from app.web.deps import RuntimeDep
from app.web.errors import NotFound

router = APIRouter()


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _allowed(request: Request, token: str | None) -> bool:
    if token:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(sent.encode(), token.encode()):
            return True
    return _loopback(request)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    if not _allowed(request, runtime.settings.metrics_token):
        raise NotFound("not found")
    body = await run_in_threadpool(render, runtime)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
