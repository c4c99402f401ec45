"""GET /health with FETALCNS_BROKER_URL set (issue 13): the real Redis and RabbitMQ answer "ok";
a closed port makes the answer "degraded" within the short timeout, never an error or a hang, and
never names the URL (it may carry a password)."""

from __future__ import annotations

import secrets
import socket
import time

import pytest
from web_support import db_url, web  # noqa: F401
from worker_support import AMQP_URL, REDIS_URL, need

from app.web.api.health import BROKER_TIMEOUT_S

pytestmark = pytest.mark.slow


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.mark.parametrize(
    ("port", "live", "dead"),
    [
        (6379, REDIS_URL, "redis://:hunter2-secret@127.0.0.1:{port}/0"),
        (5672, AMQP_URL, "amqp://guest:hunter2-secret@127.0.0.1:{port}/%2F"),
    ],
    ids=["redis", "rabbitmq"],
)
def test_health_reports_whether_the_broker_answers(web, port: int, live: str, dead: str) -> None:  # noqa: F811
    need(port, "the broker")
    queue = f"test-health-{secrets.token_hex(4)}"
    up = web(broker_url=live, broker_queue=queue).client.get("/health")
    assert up.status_code == 200
    assert up.json()["broker"] == "ok" and up.json()["status"] == "ok", up.json()

    h = web(broker_url=dead.format(port=_closed_port()), broker_queue=queue)
    started = time.monotonic()
    down = h.client.get("/health")
    took = time.monotonic() - started
    # The database answers, so the pages still serve: 200, with the broker's state.
    assert down.status_code == 200, down.text
    body = down.json()
    assert body["status"] == "degraded" and body["database"] == "ok"
    assert body["broker"].startswith("unreachable: "), body
    assert "hunter2" not in down.text and "127.0.0.1" not in down.text
    assert took < BROKER_TIMEOUT_S + 3


def test_health_without_a_broker_names_none(web) -> None:  # noqa: F811
    body = web(worker_enabled=False).client.get("/health").json()
    assert body["broker"] is None and body["status"] == "ok"
