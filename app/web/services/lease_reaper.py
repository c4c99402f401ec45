"""Re-sends to the broker the analyses whose worker died: running with an expired lease.

A message can be lost for good when its worker dies after the broker handed it over and the
broker's own redelivery comes too early (another worker then finds a live lease, does nothing
and acknowledges it). The database still says "running" with a lease that runs out; this loop,
in every ``fetalcns worker``, sends such analyses again. Several workers may send the same one:
only one claim succeeds (app.web.services.leases), the rest are no-ops.

At start it also sends every queued analysis: one whose message was never sent (the broker was
down when it was uploaded) is not lost either.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from app.web.core.db_retry import describe
from app.web.services import leases

log = logging.getLogger(__name__)


class LeaseReaper:
    def __init__(
        self, session_factory: sessionmaker[Session], send: Callable[[int], None], interval_s: float
    ) -> None:
        self.session_factory = session_factory
        self.send = send
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def send_claimable(self) -> int:
        """Send every queued analysis and every one whose lease expired; returns how many."""
        with self.session_factory() as db:
            ids = leases.expired_or_queued(db, limit=100_000)
        for analysis_id in ids:
            self.send(analysis_id)
        return len(ids)

    def send_expired(self) -> int:
        with self.session_factory() as db:
            ids = leases.expired(db)
        for analysis_id in ids:
            log.info("analysis %d: its worker's lease expired; sent again", analysis_id)
            self.send(analysis_id)
        return len(ids)

    def _run(self) -> None:
        try:
            sent = self.send_claimable()
            if sent:
                log.info("sent %d waiting analyses to the broker at start", sent)
        except Exception as exc:
            log.warning("the start-up send of waiting analyses failed: %s", describe(exc))
        while not self._stop.wait(self.interval_s):
            try:
                self.send_expired()
            except Exception as exc:
                log.warning("the lease check failed; retrying: %s", describe(exc))
