"""The background analysis worker: one thread per server process, fed by a bounded queue.

The queue only holds hints (analysis ids). The truth is the ``status`` column:
an upload commits its analyses as "queued" before enqueueing them, so a full
queue or a restart loses nothing. The worker keeps polling the database for
analyses it may take: queued ones, and running ones whose lease has expired
(their worker died). Claiming is one conditional UPDATE that writes a lease
(app.web.services.leases), renewed by heartbeats while the analysis runs, and
the result is written only while the lease is held: several server processes
and ``fetalcns worker`` processes never analyse a study twice, and one
starting while another analyses changes nothing.

``process(analysis_id)`` is the one analysis step: the in-process thread calls it, and so does
``fetalcns worker`` for each message of the broker (app.web.services.task_queue).

Every database step is one short transaction, retried with a bounded backoff when it meets a
transient error (a locked SQLite, a PostgreSQL deadlock, serialization failure or lost
connection: app.web.core.db_retry). When the retries run out the analysis goes back to
"queued" rather than "failed": nothing is wrong with the study. Any other error fails it.

A bad image never stops the study: when a batch fails, its images are retried
one by one and each failure is recorded on that image with a reason. A study
whose images all fail is marked failed, with the reason.

Memory is bounded by design: a study's images are loaded, scored and their
heatmaps stored in batches that fit FETALCNS_WORKER_BATCH_BYTES (``plan_batches``),
and only the small per-image results are kept until the verdict is written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import cv2
import numpy as np
from sqlalchemy import select, update

from app.web.core.blob_store import StorageUnavailable
from app.web.core.db import utcnow
from app.web.core.db_retry import describe, is_transient, retry_transient
from app.web.core.metrics import record_analysis
from app.web.core.models import Analysis, Image, ImagePredictionRow, Study, VerdictRow
from app.web.core.priority import lower_this_thread
from app.web.runtime import Runtime
from app.web.services import leases

log = logging.getLogger(__name__)
T = TypeVar("T")


_NO_CAM = np.zeros((0, 0), np.float32)
# Working memory per image while it is analysed: RGB pixels (3 bytes) and its Grad-CAM (float32).
_BYTES_PER_PIXEL = 3 + 4


def _image_error(exc: Exception) -> str:
    return f"this image could not be analysed: {exc}"


def plan_batches(sizes: list[tuple[int, int]], budget_bytes: int) -> list[list[int]]:
    """Positions of images (width, height each) grouped in study order into batches whose
    working memory fits ``budget_bytes``; an image larger than the budget is a batch alone."""
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for position, (width, height) in enumerate(sizes):
        cost = max(1, int(width) * int(height)) * _BYTES_PER_PIXEL
        if current and used + cost > budget_bytes:
            batches.append(current)
            current, used = [], 0
        current.append(position)
        used += cost
    if current:
        batches.append(current)
    return batches


class AnalysisWorker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._queue: queue.Queue[int] = queue.Queue(maxsize=runtime.settings.worker_queue_size)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Tests and benchmarks may hook in here to observe progress.
        self.on_done: Callable[[int], None] | None = None
        # Runs of one database step that meets a transient error (app.web.core.db_retry), and
        # the first wait between them (doubling, capped at 5 s): about 15 s in all by default.
        self.retry_attempts = 6
        self.retry_first_delay_s = 0.2

    def _retry(self, work: Callable[[], T], what: str) -> T:
        return retry_transient(
            work, what, attempts=self.retry_attempts, first_delay_s=self.retry_first_delay_s
        )

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        # Nothing is reset here: an analysis another process runs keeps its lease, and one whose
        # worker died is found by the poll once its lease has expired.
        self._thread = threading.Thread(target=self._run, name="analysis-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def enqueue(self, analysis_id: int) -> None:
        """Hint that ``analysis_id`` is queued. Never blocks: when full, the DB poll finds it."""
        try:
            self._queue.put_nowait(analysis_id)
        except queue.Full:
            log.info("worker queue full; analysis %d waits in the database", analysis_id)
        self._wake.set()

    def queue_depth(self) -> int:
        return self._queue.qsize()

    # ---- loop ------------------------------------------------------------------------
    def _next_from_db(self) -> int | None:
        """The oldest analysis this worker may take: queued, or running on an expired lease."""
        with self.runtime.session_factory() as db:
            found = leases.expired_or_queued(db, limit=1)
            return found[0] if found else None

    def _take(self) -> int | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return self._next_from_db()

    def _run(self) -> None:
        # This thread shares its process with the web requests: they go first (app.web.core.priority).
        lower_this_thread(self.runtime.settings.worker_nice)
        while not self._stop.is_set():
            try:
                analysis_id = self._take()
            except Exception:
                log.exception("the worker could not read the queue; retrying")
                analysis_id = None
            if analysis_id is None or not self.process(analysis_id):
                self._wake.wait(self.runtime.settings.worker_poll_s)
                self._wake.clear()

    def run_pending(self) -> int:
        """Analyse every queued analysis in the calling thread (CLI demo data, tests); returns how many."""
        count = 0
        while (analysis_id := self._next_from_db()) is not None:
            if not self.process(analysis_id):
                break  # left queued (the database is busy): a later run takes it
            count += 1
        return count

    # ---- one analysis ----------------------------------------------------------------
    @property
    def lease_s(self) -> float:
        return self.runtime.settings.worker_lease_s

    def _claim(self, analysis_id: int, owner: str) -> bool:
        return self._retry(lambda: self._claim_once(analysis_id, owner), f"claiming analysis {analysis_id}")

    def _claim_once(self, analysis_id: int, owner: str) -> bool:
        inference = self.runtime.inference
        with self.runtime.session_factory() as db:
            return leases.claim(
                db,
                analysis_id,
                owner,
                self.lease_s,
                model_name=inference.card.name if inference else None,
                model_version=inference.card.version if inference else None,
                model_sha256=inference.card.sha256 if inference else None,
                provider=inference.provider if inference else None,
            )

    def _attempts(self, analysis_id: int) -> int:
        with self.runtime.session_factory() as db:
            return int(db.scalar(select(Analysis.attempts).where(Analysis.id == analysis_id)) or 0)

    def _finish_failed(self, analysis_id: int, owner: str, reason: str, timings: dict[str, float]) -> None:
        self._retry(
            lambda: self._finish_failed_once(analysis_id, owner, reason, timings),
            f"failing analysis {analysis_id}",
        )

    def _finish_failed_once(
        self, analysis_id: int, owner: str, reason: str, timings: dict[str, float]
    ) -> None:
        with self.runtime.session_factory() as db:
            analysis = leases.hold(db, analysis_id, owner)
            if analysis is None:
                return  # the lease was lost: another worker has the analysis now
            analysis.status = "failed"
            analysis.error = reason
            analysis.finished_at = utcnow()
            analysis.timings = timings
            leases.end_lease(analysis)
            analysis.study.status = "failed"
            db.commit()

    def process(self, analysis_id: int) -> bool:
        """Claim and run one analysis. Never raises: failures are recorded on the analysis.

        Returns False when the analysis is left queued for later (the database was busy past the
        retries), so that callers wait before they look again instead of spinning on it.
        """
        if self.runtime.inference is None:
            return False
        # One owner per claim, so that even two threads of one process never share a lease.
        owner = leases.new_owner_id()
        try:
            claimed = self._claim(analysis_id, owner)
        except Exception as exc:
            # Unchanged (the claim's transaction was rolled back): a later poll takes it.
            log.warning("analysis %d could not be claimed now: %s", analysis_id, describe(exc))
            return False
        if not claimed:
            return True  # done already, or another worker holds a live lease on it
        started = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            attempts = self._attempts(analysis_id)
            max_attempts = self.runtime.settings.worker_max_attempts
            if attempts > max_attempts:
                # Each earlier worker died while running it (e.g. killed for memory): stop the loop.
                reason = f"the analysis was started {attempts - 1} times and its worker stopped each time"
                self._finish_failed(analysis_id, owner, reason, timings)
                return True
            with leases.LeaseKeeper(self.runtime.session_factory, analysis_id, owner, self.lease_s):
                self._analyse(analysis_id, owner, timings)
        except Exception as exc:
            if is_transient(exc) or isinstance(exc, StorageUnavailable):
                # The database was busy or away even after the retries, or the blob store was
                # unreachable: nothing is wrong with the study, so it goes back to the queue (and
                # is analysed again) instead of failing.
                log.warning("analysis %d put back in the queue: %s", analysis_id, describe(exc))
                self._requeue(analysis_id, owner)
                return False
            log.exception("analysis %d failed", analysis_id)
            timings["total_s"] = time.perf_counter() - started
            try:
                self._finish_failed(analysis_id, owner, f"the analysis failed: {exc}", timings)
                record_analysis(timings["total_s"], 0, "failed")
            except Exception as db_exc:
                # Left "running": its lease expires and another worker (or this one) takes it again.
                log.error("analysis %d could not be marked failed: %s", analysis_id, describe(db_exc))
                return False
        if self.on_done is not None:
            self.on_done(analysis_id)
        return True

    def _requeue(self, analysis_id: int, owner: str) -> None:
        def requeue() -> None:
            with self.runtime.session_factory() as db:
                analysis = leases.hold(db, analysis_id, owner)
                if analysis is None:
                    return
                analysis.status = "queued"
                analysis.started_at = None
                leases.end_lease(analysis)
                db.execute(update(Study).where(Study.id == analysis.study_id).values(status="queued"))
                db.commit()

        try:
            self._retry(requeue, f"re-queueing analysis {analysis_id}")
        except Exception as exc:
            # Left "running": its lease expires and a worker takes it again.
            log.error("analysis %d could not be re-queued: %s", analysis_id, describe(exc))

    def _image_rows(self, analysis_id: int) -> list[Image]:
        """The study's image rows in study order (metadata only; no pixels are read here)."""

        def read_rows() -> list[Image]:
            with self.runtime.session_factory() as db:
                study_id = db.scalar(select(Analysis.study_id).where(Analysis.id == analysis_id))
                return list(
                    db.scalars(select(Image).where(Image.study_id == study_id).order_by(Image.position))
                )

        return self._retry(read_rows, f"reading the images of analysis {analysis_id}")

    def _load(self, image: Image) -> Any:
        """One stored display image as an IngestedImage; OSError/ValueError when it is unreadable."""
        from app.ingest.types import IngestedImage

        data = np.frombuffer(self.runtime.store.read_bytes(image.storage_key), np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("the stored image is unreadable")
        pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        box = tuple(image.scan_box) if image.scan_box else None
        # The header (modality) goes with the pixels: the gate's "not an ultrasound image" reads it.
        return IngestedImage(
            image.filename,
            image.frame,
            pixels,
            box,  # type: ignore[arg-type]
            image.source_sha256,
            metadata=dict(image.source_metadata or {}),
        )

    def _analyse(self, analysis_id: int, owner: str, timings: dict[str, float]) -> None:
        from app.inference.analysis import conclude_study, frames_to_analyse, loop_key, score_images
        from app.inference.render import encode_png, heatmap_rgba

        engine = self.runtime.inference
        assert engine is not None
        card = engine.card
        every_row = self._image_rows(analysis_id)
        # Of a cine loop, the frames the card asks for; the other stored frames are for playback only.
        keys = [loop_key(row.source_sha256, row.frame) for row in every_row]
        chosen = frames_to_analyse(keys, [row.frame for row in every_row], card.cine_rule.max_analysed_frames)
        rows = [every_row[i] for i in chosen]
        groups = [keys[i] for i in chosen]
        ids = [row.id for row in rows]
        predictions: list[Any] = [None] * len(rows)
        # Positions that could not be loaded, analysed or given a stored heatmap, with the reason;
        # they stay in the study as failed images, so that the verdict's counts include them.
        failures: dict[int, str] = {}
        heatmaps: dict[int, str] = {}
        for phase in ("load_s", "inference_s", "render_s"):
            timings[phase] = 0.0
        # A study is analysed in batches of images that fit the memory budget: only one batch of
        # decoded pixels and full-size Grad-CAM maps is held at a time, never the whole study.
        budget = self.runtime.settings.worker_batch_bytes
        for batch in plan_batches([(row.width, row.height) for row in rows], budget):
            t0 = time.perf_counter()
            loaded: list[tuple[int, Any]] = []
            for position in batch:
                try:
                    loaded.append((position, self._load(rows[position])))
                except (OSError, ValueError) as exc:
                    failures[position] = _image_error(exc)
            timings["load_s"] += time.perf_counter() - t0

            t0 = time.perf_counter()
            positions = [position for position, _ in loaded]
            scored = score_images(engine, [image for _, image in loaded], positions, failures)
            del loaded
            timings["inference_s"] += time.perf_counter() - t0

            t0 = time.perf_counter()
            for position, prediction in zip(positions, scored, strict=True):
                if prediction is None:
                    continue
                try:
                    heatmaps[position], _ = self.runtime.store.put_bytes(
                        encode_png(heatmap_rgba(prediction.cam)), "png"
                    )
                except StorageUnavailable:
                    raise  # the store is away, not the image at fault: the study is requeued
                except Exception as exc:
                    # An image without its heatmap is not shown, so it must not count in the verdict.
                    failures[position] = _image_error(exc)
                    continue
                # The full-size map now lives in the stored heatmap; the small class maps stay.
                prediction.cam = _NO_CAM
                predictions[position] = prediction
            del scored
            timings["render_s"] += time.perf_counter() - t0

        result = conclude_study(engine, predictions, failures, groups=groups)
        errors = {ids[position]: reason for position, reason in result.errors.items()}
        good: list[tuple[int, Any, str]] = [(ids[i], p, heatmaps[i]) for i, p in result.analysed]

        verdict = result.verdict if good else None
        timings["total_s"] = sum(timings.values())
        saved = self._retry(
            lambda: self._save_result(analysis_id, owner, card.classes, good, errors, verdict, ids, timings),
            f"saving analysis {analysis_id}",
        )
        if not saved:
            log.warning("analysis %d: the lease was lost before the result was saved; dropped", analysis_id)
            return
        record_analysis(timings["total_s"], len(ids), "done" if verdict is not None else "failed")
        log.info(
            "analysis %d finished: %d images analysed, %d failed, %.2fs",
            analysis_id,
            len(good),
            len(errors),
            timings["total_s"],
        )

    def _save_result(
        self,
        analysis_id: int,
        owner: str,
        classes: Any,
        good: list[tuple[int, Any, str]],
        errors: dict[int, str],
        verdict: Any | None,
        ids: list[int],
        timings: dict[str, float],
    ) -> bool:
        """One transaction with every prediction and the verdict (run again whole on a retry).

        Written only while ``owner`` holds the lease, and the row stays locked until the commit
        that ends the lease: of two workers that analysed one study, exactly one writes, so a
        duplicated delivery never doubles rows nor meets a unique constraint. False when the
        lease was lost and nothing was written.
        """
        from app.inference.analysis import exclusion_key

        with self.runtime.session_factory() as db:
            analysis = leases.hold(db, analysis_id, owner)
            if analysis is None:
                db.rollback()
                return False
            used = {ids[i] for i in verdict.support} if verdict is not None else set()
            for image_id, prediction, heatmap_key in good:
                db.add(
                    ImagePredictionRow(
                        analysis_id=analysis_id,
                        image_id=image_id,
                        label=prediction.label,
                        probabilities={
                            c: float(p) for c, p in zip(classes, prediction.probabilities, strict=True)
                        },
                        ood=bool(prediction.ood),
                        ood_score=float(prediction.ood_score),
                        quality_issue=prediction.quality_issue,
                        exclusion=exclusion_key(prediction),
                        exclusion_reason=prediction.exclusion_reason,
                        heatmap_key=heatmap_key,
                        used_in_verdict=image_id in used,
                    )
                )
            for image_id, reason in errors.items():
                db.add(ImagePredictionRow(analysis_id=analysis_id, image_id=image_id, error=reason))
            analysis.finished_at = utcnow()
            analysis.timings = dict(timings)
            leases.end_lease(analysis)
            if verdict is None:
                analysis.status = "failed"
                first_reason = next(iter(errors.values()), "")
                analysis.error = (
                    f"none of the {len(errors)} image(s) could be analysed; {first_reason}"
                    if errors
                    else "the study has no images"
                )
                analysis.study.status = "failed"
            else:
                db.add(
                    VerdictRow(
                        analysis_id=analysis_id,
                        label=verdict.label,
                        probabilities=dict(verdict.probabilities),
                        p_abnormal=verdict.p_abnormal,
                        reason=verdict.reason,
                        aggregation=verdict.aggregation,
                        support=[ids[i] for i in verdict.support],
                        n_used=verdict.n_used,
                        n_excluded=verdict.n_excluded,
                        n_total=verdict.n_total,
                        excluded_by_reason=dict(verdict.excluded_by_reason),
                    )
                )
                analysis.status = "done"
                analysis.study.status = "done"
            db.commit()
            return True
