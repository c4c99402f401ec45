"""When a received study is complete: at the end of the association that sent it, or once it
has been quiet for N seconds.

Senders differ: a PACS sends a study in one association, some ultrasound machines open one
association per image. Analysing at each association's end would analyse such a study once per
image, so ``quiet_s`` waits for the study to stop receiving instead (across associations).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable

log = logging.getLogger(__name__)

Settled = Callable[[set[int]], None]


class StudySettler:
    """Tracks which studies received instances, and hands them to ``on_settled`` once complete.

    ``on_settled`` is called from the association's thread (``quiet_s == 0``) or from this
    object's timer thread; it must not raise (failures are logged and the studies dropped from
    the pending set: the listener's start-up recovery queues what was never queued).
    """

    def __init__(
        self, quiet_s: float, on_settled: Settled, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.quiet_s = quiet_s
        self._on_settled = on_settled
        self._clock = clock
        self._lock = threading.Lock()
        self._last_seen: dict[int, float] = {}
        self._by_association: dict[Hashable, set[int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def received(self, association: Hashable, study_ids: Iterable[int]) -> None:
        now = self._clock()
        with self._lock:
            for study_id in study_ids:
                self._last_seen[study_id] = now
                self._by_association.setdefault(association, set()).add(study_id)

    def association_ended(self, association: Hashable) -> None:
        """Released or aborted: what it stored is stored (each instance was acknowledged)."""
        with self._lock:
            studies = self._by_association.pop(association, set())
            if self.quiet_s > 0:
                return
            for study_id in studies:
                self._last_seen.pop(study_id, None)
        self._hand_over(studies)

    def tick(self) -> None:
        """Settle the studies quiet for ``quiet_s`` (called by the timer thread, and by tests)."""
        if self.quiet_s <= 0:
            return
        cutoff = self._clock() - self.quiet_s
        with self._lock:
            quiet = {study_id for study_id, seen in self._last_seen.items() if seen <= cutoff}
            for study_id in quiet:
                del self._last_seen[study_id]
        self._hand_over(quiet)

    def pending(self) -> set[int]:
        with self._lock:
            return set(self._last_seen) | {s for studies in self._by_association.values() for s in studies}

    def start(self) -> None:
        if self.quiet_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="dicom-settler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer and settle everything still pending (the listener is shutting down:
        what was acknowledged should be analysed rather than wait for a restart)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            studies = set(self._last_seen) | {s for group in self._by_association.values() for s in group}
            self._last_seen.clear()
            self._by_association.clear()
        self._hand_over(studies)

    def _run(self) -> None:
        interval = min(1.0, self.quiet_s / 4)
        while not self._stop.wait(interval):
            self.tick()

    def _hand_over(self, studies: set[int]) -> None:
        if not studies:
            return
        try:
            self._on_settled(studies)
        except Exception as exc:  # the listener must keep running; the message may hold SQL values
            log.error(
                "queueing the analysis of %d received studies failed (%s)", len(studies), type(exc).__name__
            )
