"""Whether the broker of FETALCNS_BROKER_URL answers, for /health (app.web.api.health).

Apart from app.web.services.task_queue so that /health does not import Dramatiq.
"""

from __future__ import annotations


def broker_state(url: str, timeout_s: float = 1.0) -> str:
    """ "ok" when the broker answers within ``timeout_s`` (a Redis PING, or an AMQP connection
    opened and closed), else "unreachable: <error type>" (never the URL: it may hold a password).
    A separate short-lived connection, so that a dead broker costs /health one timeout, not a hang."""
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
            try:
                client.ping()
            finally:
                client.close()
        elif url.startswith(("amqp://", "amqps://")):
            import pika

            parameters = pika.URLParameters(url)
            parameters.socket_timeout = timeout_s
            parameters.stack_timeout = timeout_s
            parameters.blocked_connection_timeout = timeout_s
            parameters.connection_attempts = 1
            pika.BlockingConnection(parameters).close()
        else:
            return "unreachable: not a redis:// or amqp:// URL"
    except Exception as exc:  # any failure to reach it is the answer, not an error of /health
        return f"unreachable: {type(exc).__name__}"
    return "ok"
