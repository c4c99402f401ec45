"""Analysis jobs on a broker: Dramatiq over Redis or RabbitMQ (``FETALCNS_BROKER_URL``).

A message carries only an analysis id. The truth stays in the database (``analyses.status`` and
the lease, app.web.services.leases): a message is a request to run ``AnalysisWorker.
process_with_waiting``, which claims the analysis or, when it is done or leased by a live worker,
does nothing; with it, it claims and runs up to ``--batch-studies`` - 1 other waiting analyses, whose
own messages then find them leased or done and do nothing. So the
broker may deliver a message twice (a worker killed before its ack, a re-send by the lease
reaper) and an analysis is still analysed once; a lost message is made good by the reaper.

Web processes only send (``BrokerQueue``); ``fetalcns worker`` consumes (app.web.worker_cli).
Why Dramatiq and not Celery: docs/deployment.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import Retries

log = logging.getLogger(__name__)

ACTOR_NAME = "fetalcns.analyse"


class LeftQueued(Exception):
    """The analysis could not be claimed now (the database is busy): the broker retries later."""


def make_broker(url: str, *, lease_s: float = 60.0) -> dramatiq.Broker:
    """A Dramatiq broker for ``redis://…`` or ``amqp://…``.

    Middleware is chosen, not Dramatiq's default: no time limit (an analysis of a large study may
    take minutes, and its lease, not a timer, says whether its worker lives) and a retry with
    backoff only for ``LeftQueued``. Redis: a worker's unacknowledged messages go back to the queue
    once its heartbeat is a lease old (RabbitMQ does this itself when the connection drops).
    """
    middleware = [Retries(max_retries=20, min_backoff=1000, max_backoff=60_000, retry_when=_retry_when)]
    if url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(
            url=url,
            middleware=middleware,
            namespace="fetalcns",
            heartbeat_timeout=int(lease_s * 1000),
            # Out of 1,000,000 commands: the dead-worker check runs on about one fetch in ten.
            maintenance_chance=100_000,
        )
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url, middleware=middleware)
    raise ValueError("FETALCNS_BROKER_URL must start with redis://, rediss:// or amqp://")


def _retry_when(retries: int, exc: BaseException) -> bool:
    return isinstance(exc, LeftQueued) and retries < 20


def analysis_message(queue: str, analysis_id: int) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=queue, actor_name=ACTOR_NAME, args=(analysis_id,), kwargs={}, options={}
    )


class BrokerQueue:
    """What a web process holds in place of the in-process worker when a broker is set: it
    sends each new analysis to the broker and runs none itself."""

    def __init__(self, url: str, queue: str, lease_s: float) -> None:
        self.broker = make_broker(url, lease_s=lease_s)
        self.queue = queue
        self.broker.declare_queue(queue)

    @property
    def running(self) -> bool:
        return True  # sends go to the broker; /health reports the broker's own state elsewhere

    def enqueue(self, analysis_id: int) -> None:
        """Send one analysis. A failure is logged, not raised: the upload is committed and the
        analysis waits as "queued" until a worker's start-up sweep sends it again."""
        try:
            self.broker.enqueue(analysis_message(self.queue, analysis_id))
        except Exception as exc:
            log.error("analysis %d could not be sent to the broker: %s", analysis_id, type(exc).__name__)

    def queue_depth(self) -> int:
        return 0  # unknown here; /metrics counts queued analyses in the database

    def start(self) -> None:
        return None

    def stop(self, timeout: float = 30.0) -> None:
        self.broker.close()


def declare_analysis_actor(broker: dramatiq.Broker, queue: str, process: Callable[[int], bool]) -> Any:
    """Register the actor that runs ``process(analysis_id)`` for each message (worker side)."""

    def analyse(analysis_id: int) -> None:
        if not process(int(analysis_id)):
            raise LeftQueued(f"analysis {analysis_id} left queued")

    return dramatiq.Actor(
        analyse, broker=broker, actor_name=ACTOR_NAME, queue_name=queue, priority=0, options={}
    )
