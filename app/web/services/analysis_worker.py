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

``process_many(ids)`` is the one analysis step (``process(id)`` for one): the in-process thread
calls it with up to FETALCNS_WORKER_STUDY_BATCH analyses queued together, whose images then share
the model's batches, and ``fetalcns worker`` calls ``process_with_waiting`` for each message of
the broker (app.web.services.task_queue): the message's analysis and up to ``--batch-studies`` - 1
others waiting in the database, taken the same way. Stored display images are decoded and
preprocessed in a process pool (app.inference.prepare.PreparePool,
FETALCNS_WORKER_PREPARE_PROCESSES, one per core by default) while the model runs on the previous
batch; an image uploaded in this same process comes with its model input already prepared
(app.web.services.prepared_inputs), and only its blob is read, to check it still hashes to its
key. Nothing is drawn: each image's model-resolution Grad-CAM is stored and its heatmap drawn
when someone first looks (app.web.services.heatmaps).

Every database step is one short transaction, retried with a bounded backoff when it meets a
transient error (a locked SQLite, a PostgreSQL deadlock, serialization failure or lost
connection: app.web.core.db_retry). When the retries run out the analysis goes back to
"queued" rather than "failed": nothing is wrong with the study. Any other error fails it.

A bad image never stops the study: when a batch fails, its images are retried
one by one and each failure is recorded on that image with a reason. A study
whose images all fail is marked failed, with the reason.

Memory is bounded by design: images are decoded and scored in batches that fit
FETALCNS_WORKER_BATCH_BYTES (``plan_batches``), at most two batches at a time, and only the small
per-image results are kept until the verdicts are written.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select, update

from app.inference.prepare import PreparePool
from app.web.core.blob_store import StorageUnavailable
from app.web.core.db import utcnow
from app.web.core.db_retry import describe, is_transient, retry_transient
from app.web.core.metrics import record_analysis, record_model_batches
from app.web.core.models import Analysis, Image, ImagePredictionRow, Study, VerdictRow
from app.web.core.priority import lower_this_thread
from app.web.runtime import Runtime
from app.web.services import leases
from app.web.services.prepared_inputs import PreparedInputs, cache_key

log = logging.getLogger(__name__)
T = TypeVar("T")


# Working memory per image while it is prepared: the decoded BGR pixels and their RGB copy
# (3 + 3 bytes) and a byte of masks for the scan-area search; the model input is small.
_BYTES_PER_PIXEL = 3 + 4


@dataclass
class _Job:
    """One claimed analysis while it runs: its lease owner, rows, results so far and timings."""

    analysis_id: int
    owner: str
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    rows: list[Image] = field(default_factory=list)
    # Per analysed row, the cine loop it belongs to (None for a still): a loop counts as one image.
    groups: list[str | None] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    # Positions that could not be loaded or analysed, with the reason; they stay in the study as
    # failed images, so that the verdict's counts include them.
    failures: dict[int, str] = field(default_factory=dict)
    # Position -> (model-resolution map of the predicted class, the box the model saw).
    cams: dict[int, tuple[list[list[float]], list[int]]] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds


@dataclass
class _Item:
    """One image of a job, as the cross-study batches see it."""

    job: _Job
    position: int
    row: Image


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
        self._pool: PreparePool | None = None
        # Model inputs an upload in this process prepared while it had the pixels (the worker
        # then skips reading and decoding those PNGs); anything else is read from the store.
        self.prepared_inputs = PreparedInputs()

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
        self.close()

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
    def _next_from_db(self, limit: int = 1) -> list[int]:
        """The oldest analyses this worker may take: queued, or running on an expired lease."""
        with self.runtime.session_factory() as db:
            return leases.expired_or_queued(db, limit=limit)

    def _take(self) -> list[int]:
        """Up to ``worker_study_batch`` analyses to run together: the hinted ones first, then the
        database's, so that studies queued together share the model's batches."""
        limit = self.runtime.settings.worker_study_batch
        taken: list[int] = []
        while len(taken) < limit:
            try:
                analysis_id = self._queue.get_nowait()
            except queue.Empty:
                break
            if analysis_id not in taken:
                taken.append(analysis_id)
        return self._with_waiting(taken, limit)

    def _with_waiting(self, taken: list[int], limit: int) -> list[int]:
        """``taken`` topped up to ``limit`` with the oldest analyses waiting in the database."""
        if len(taken) < limit:
            taken = taken + [i for i in self._next_from_db(limit) if i not in taken][: limit - len(taken)]
        return taken

    def _run(self) -> None:
        # This thread shares its process with the web requests: they go first (app.web.core.priority).
        lower_this_thread(self.runtime.settings.worker_nice)
        # The preparing processes start now, not in the first analysis's time (and inherit the priority).
        self.pool.warm_up()
        while not self._stop.is_set():
            try:
                taken = self._take()
            except Exception:
                log.exception("the worker could not read the queue; retrying")
                taken = []
            if not taken or not self.process_many(taken):
                self._wake.wait(self.runtime.settings.worker_poll_s)
                self._wake.clear()

    def run_pending(self) -> int:
        """Analyse every queued analysis in the calling thread (CLI demo data, tests); returns how many."""
        count = 0
        limit = self.runtime.settings.worker_study_batch
        while taken := self._next_from_db(limit):
            if not self.process_many(taken):
                break  # left queued (the database is busy): a later run takes it
            count += len(taken)
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
        return self.process_many([analysis_id])

    def process_with_waiting(self, analysis_id: int, limit: int) -> bool:
        """For one broker message: ``analysis_id`` and up to ``limit - 1`` other analyses waiting
        in the database, run together (``process_many``). Each is claimed with its own lease, so
        no other worker runs them, and their own messages, delivered later, find them leased or
        done and do nothing. Never raises; False when any of them is left queued."""
        try:
            taken = self._with_waiting([analysis_id], limit)
        except Exception as exc:
            # The message's own analysis still runs; process_many meets the database on its own.
            log.warning(
                "waiting analyses could not be read; analysis %d runs alone: %s", analysis_id, describe(exc)
            )
            taken = [analysis_id]
        return self.process_many(taken)

    def process_many(self, analysis_ids: list[int]) -> bool:
        """Claim and run several analyses together: their images share the model's batches (a GPU
        or a wide CPU batch runs many studies' images at the cost of few), and each study's result
        is still concluded, written and failed on its own. Never raises.

        Returns False when any of them is left queued for later (see ``process``).
        """
        if self.runtime.inference is None:
            return False
        settled = True
        jobs: list[_Job] = []
        claimed_ids: list[int] = []
        for analysis_id in analysis_ids:
            # One owner per claim, so that even two threads of one process never share a lease.
            job = _Job(analysis_id, leases.new_owner_id())
            try:
                claimed = self._claim(analysis_id, job.owner)
            except Exception as exc:
                # Unchanged (the claim's transaction was rolled back): a later poll takes it.
                log.warning("analysis %d could not be claimed now: %s", analysis_id, describe(exc))
                settled = False
                continue
            if not claimed:
                continue  # done already, or another worker holds a live lease on it
            claimed_ids.append(analysis_id)
            try:
                attempts = self._attempts(analysis_id)
            except Exception as exc:
                settled &= self._settle_error(job, exc)
                continue
            if attempts > self.runtime.settings.worker_max_attempts:
                # Each earlier worker died while running it (e.g. killed for memory): stop the loop.
                reason = f"the analysis was started {attempts - 1} times and its worker stopped each time"
                try:
                    self._finish_failed(analysis_id, job.owner, reason, job.timings)
                except Exception as exc:
                    log.error("analysis %d could not be marked failed: %s", analysis_id, describe(exc))
                    settled = False
                continue
            jobs.append(job)
        if jobs:
            with ExitStack() as keepers:
                for job in jobs:
                    keepers.enter_context(
                        leases.LeaseKeeper(
                            self.runtime.session_factory, job.analysis_id, job.owner, self.lease_s
                        )
                    )
                try:
                    passes = self._score_jobs(jobs)
                    # Ids only (no patient data): shows which studies shared the model's batches.
                    log.info(
                        "analyses %s run together: %d images in %d model batches",
                        ",".join(str(job.analysis_id) for job in jobs),
                        sum(len(job.rows) for job in jobs),
                        passes,
                    )
                except Exception as exc:
                    # Reading the study or the store failed for the whole batch.
                    for job in jobs:
                        settled &= self._settle_error(job, exc)
                    jobs = []
                for job in jobs:
                    try:
                        self._conclude(job)
                    except Exception as exc:
                        settled &= self._settle_error(job, exc)
        for analysis_id in claimed_ids:
            if self.on_done is not None:
                self.on_done(analysis_id)
        return settled

    def _settle_error(self, job: _Job, exc: Exception) -> bool:
        """Record what an exception means for one analysis; False when it is left for later."""
        analysis_id, owner = job.analysis_id, job.owner
        if is_transient(exc) or isinstance(exc, StorageUnavailable):
            # The database was busy or away even after the retries, or the blob store was
            # unreachable: nothing is wrong with the study, so it goes back to the queue (and
            # is analysed again) instead of failing.
            log.warning("analysis %d put back in the queue: %s", analysis_id, describe(exc))
            self._requeue(analysis_id, owner)
            return False
        log.exception("analysis %d failed", analysis_id)
        job.timings["total_s"] = time.perf_counter() - job.started
        try:
            self._finish_failed(analysis_id, owner, f"the analysis failed: {exc}", job.timings)
            record_analysis(job.timings["total_s"], 0, "failed")
        except Exception as db_exc:
            # Left "running": its lease expires and another worker (or this one) takes it again.
            log.error("analysis %d could not be marked failed: %s", analysis_id, describe(db_exc))
            return False
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

    @property
    def pool(self) -> PreparePool:
        """The process pool that decodes and preprocesses stored images, started on first use."""
        if self._pool is None:
            self._pool = PreparePool(self.runtime.settings.worker_prepare_processes)
        return self._pool

    def close(self) -> None:
        """End the preparing processes (``stop`` does it for the in-process worker)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _submit(self, items: list[_Item]) -> list[tuple[_Item, Future[Any] | None, tuple[Any, ...]]]:
        """Send each item's stored display image to the pool; an unreadable blob fails its image.

        The blob is always read. When its bytes still hash to its key and the upload left this
        image's model input in ``prepared_inputs``, that input is the answer (the future is
        already done and ``args`` is empty): the PNG is neither decoded nor prepared again. A blob
        changed or lost since the upload goes the usual way and fails its image as it always has.
        """
        engine = self.runtime.inference
        assert engine is not None
        submitted: list[tuple[_Item, Future[Any] | None, tuple[Any, ...]]] = []
        for item in items:
            row = item.row
            box = tuple(row.scan_box) if row.scan_box else None
            metadata = dict(row.source_metadata or {})
            t0 = time.perf_counter()
            try:
                data = self.runtime.store.read_bytes(row.storage_key)
            except StorageUnavailable:
                raise  # the store is away, not the image at fault: the studies are requeued
            except OSError as exc:
                item.job.failures[item.position] = _image_error(exc)
                submitted.append((item, None, ()))
                continue
            finally:
                item.job.add("load_s", time.perf_counter() - t0)
            ready = self.prepared_inputs.take(cache_key(row.storage_key, engine.spec, box, metadata))
            if ready is not None and hashlib.sha256(data).hexdigest() == row.storage_key.split(".", 1)[0]:
                done: Future[Any] = Future()
                done.set_result(ready)
                submitted.append((item, done, ()))
                continue
            # The header (modality) goes with the pixels: the gate's "not an ultrasound image" reads it.
            args = (data, engine.spec, box, metadata)
            submitted.append((item, self.pool.submit(*args), args))
        return submitted

    def _score_jobs(self, jobs: list[_Job]) -> int:
        """Every image of every job through the model, in batches that fit the memory budget and
        span studies. The next batch is decoded and preprocessed in the pool while the model runs
        on this one. Only small results are kept: the class maps at model resolution, no pixels.
        Returns how many model batches ran (not counting a failed batch's image-by-image retry)."""
        from app.inference.analysis import frames_to_analyse, loop_key, score_prepared
        from app.web.services.heatmaps import cam_to_json

        engine = self.runtime.inference
        assert engine is not None
        items: list[_Item] = []
        max_frames = engine.card.cine_rule.max_analysed_frames
        for job in jobs:
            every_row = self._image_rows(job.analysis_id)
            # Of a cine loop, the frames the card asks for; the other stored frames are for playback only.
            keys = [loop_key(row.source_sha256, row.frame) for row in every_row]
            chosen = frames_to_analyse(keys, [row.frame for row in every_row], max_frames)
            job.rows = [every_row[i] for i in chosen]
            job.groups = [keys[i] for i in chosen]
            job.predictions = [None] * len(job.rows)
            items += [_Item(job, position, row) for position, row in enumerate(job.rows)]
        budget = self.runtime.settings.worker_batch_bytes
        passes = 0
        batches = plan_batches([(item.row.width, item.row.height) for item in items], budget)
        upcoming = self._submit([items[i] for i in batches[0]]) if batches else []
        for number in range(len(batches)):
            current = upcoming
            upcoming = (
                self._submit([items[i] for i in batches[number + 1]]) if number + 1 < len(batches) else []
            )
            ready: list[_Item] = []
            prepared: list[Any] = []
            for item, future, args in current:
                if future is None:
                    continue
                try:
                    result = self.pool.result(future, *args) if args else future.result()
                except (OSError, ValueError) as exc:
                    item.job.failures[item.position] = _image_error(exc)
                    continue
                for stage, seconds in result.timings.items():
                    item.job.add(stage, seconds)
                ready.append(item)
                prepared.append(result)
            if not ready:
                continue
            t0 = time.perf_counter()
            errors: dict[int, str] = {}
            scored = score_prepared(engine, prepared, list(range(len(ready))), errors)
            batch_passes = -(-len(ready) // engine.batch_size)  # score_prepared's engine batches
            passes += batch_passes
            record_model_batches(batch_passes)
            share = (time.perf_counter() - t0) / len(ready)
            for index, (item, prediction) in enumerate(zip(ready, scored, strict=True)):
                item.job.add("inference_s", share)
                if prediction is None:
                    item.job.failures[item.position] = errors[index]
                    continue
                t1 = time.perf_counter()
                item.job.cams[item.position] = (cam_to_json(prediction.model_cam), list(prediction.scan_box))
                item.job.predictions[item.position] = prediction
                item.job.add("cam_s", time.perf_counter() - t1)
        return passes

    def _conclude(self, job: _Job) -> None:
        """One study's verdict from its predictions, written under its lease."""
        from app.inference.analysis import conclude_study

        engine = self.runtime.inference
        assert engine is not None
        card = engine.card
        analysis_id, owner = job.analysis_id, job.owner
        ids = [row.id for row in job.rows]
        result = conclude_study(engine, job.predictions, job.failures, groups=job.groups)
        errors = {ids[position]: reason for position, reason in result.errors.items()}
        good: list[tuple[int, Any, Any]] = [(ids[i], p, job.cams[i]) for i, p in result.analysed]
        verdict = result.verdict if good else None
        t0 = time.perf_counter()
        saved = self._retry(
            lambda: self._save_result(analysis_id, owner, card.classes, good, errors, verdict, ids, job),
            f"saving analysis {analysis_id}",
        )
        if not saved:
            log.warning("analysis %d: the lease was lost before the result was saved; dropped", analysis_id)
            return
        record_analysis(job.timings["total_s"], len(ids), "done" if verdict is not None else "failed")
        log.info(
            "analysis %d finished: %d images analysed, %d failed, %.2fs (db %.3fs)",
            analysis_id,
            len(good),
            len(errors),
            job.timings["total_s"],
            time.perf_counter() - t0,
        )

    def _save_result(
        self,
        analysis_id: int,
        owner: str,
        classes: Any,
        good: list[tuple[int, Any, Any]],
        errors: dict[int, str],
        verdict: Any | None,
        ids: list[int],
        job: _Job,
    ) -> bool:
        """One transaction with every prediction and the verdict (run again whole on a retry).

        Written only while ``owner`` holds the lease, and the row stays locked until the commit
        that ends the lease: of two workers that analysed one study, exactly one writes, so a
        duplicated delivery never doubles rows nor meets a unique constraint. False when the
        lease was lost and nothing was written.
        """
        from app.inference.analysis import exclusion_key

        t0 = time.perf_counter()
        with self.runtime.session_factory() as db:
            analysis = leases.hold(db, analysis_id, owner)
            if analysis is None:
                db.rollback()
                return False
            used = {ids[i] for i in verdict.support} if verdict is not None else set()
            for image_id, prediction, (cam, cam_box) in good:
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
                        cam=cam,
                        cam_box=cam_box,
                        used_in_verdict=image_id in used,
                    )
                )
            for image_id, reason in errors.items():
                db.add(ImagePredictionRow(analysis_id=analysis_id, image_id=image_id, error=reason))
            analysis.finished_at = utcnow()
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
            # The database's share is measured up to here; the commit itself is counted in total_s.
            job.timings["db_s"] = time.perf_counter() - t0
            job.timings["total_s"] = time.perf_counter() - job.started
            analysis.timings = dict(job.timings)
            db.commit()
            return True
