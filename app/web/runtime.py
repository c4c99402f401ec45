"""Everything one server process holds: settings, database, storage, signer, model, worker.

Built by create_app and kept on ``app.state.runtime``; routes reach it via
``app.web.deps.get_runtime``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.web.core.blob_store import BlobStore, make_store
from app.web.core.db import make_engine, make_session_factory
from app.web.core.security import Signer
from app.web.services.login_throttle import LoginThrottle, ThrottlePolicy
from app.web.settings import Settings

if TYPE_CHECKING:
    from app.web.services.analysis_worker import AnalysisWorker
    from app.web.services.task_queue import BrokerQueue

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db_engine: Engine
    session_factory: sessionmaker[Session]
    # The local content-addressed folder or an S3 bucket (FETALCNS_STORAGE_BACKEND).
    store: BlobStore
    signer: Signer
    login_throttle: LoginThrottle
    # The InferenceEngine (app.inference), or None when the model could not be loaded.
    inference: Any | None = None
    inference_error: str | None = None
    # Set when the database is unreachable or not migrated to the latest revision.
    schema_error: str | None = None
    # The in-process worker, or with FETALCNS_BROKER_URL the sender of jobs to `fetalcns worker`s.
    worker: AnalysisWorker | BrokerQueue | None = field(default=None)

    @property
    def model_card(self) -> Any | None:
        return self.inference.card if self.inference is not None else None

    @property
    def class_names(self) -> tuple[str, ...]:
        card = self.model_card
        return tuple(card.classes) if card is not None else ()

    @property
    def banner(self) -> str | None:
        """The model card's warning banner; shown on every page."""
        card = self.model_card
        if card is None:
            return "no model loaded — AI analysis is unavailable"
        return card.banner


def build_runtime(settings: Settings) -> Runtime:
    db_engine = make_engine(
        settings.resolved_database_url,
        busy_timeout_s=settings.database_busy_timeout_s,
        pool_size=settings.database_pool_size,
        pool_timeout_s=settings.database_pool_timeout_s,
    )
    return Runtime(
        settings=settings,
        db_engine=db_engine,
        session_factory=make_session_factory(db_engine),
        store=make_store(settings),
        signer=Signer(settings.resolved_secret_key()),
        login_throttle=LoginThrottle(ThrottlePolicy.from_settings(settings)),
    )


def load_inference(runtime: Runtime, nice: int = 0) -> None:
    """Load the one InferenceEngine of this process; on failure keep serving and report why.

    ``nice`` > 0: loaded in a thread of lowered priority, so that the inference threads it
    starts yield to the web requests (app.web.core.priority)."""
    try:
        from app.inference import InferenceEngine
        from app.web.core.priority import call_lowered

        settings = runtime.settings
        runtime.inference = call_lowered(
            nice,
            lambda: InferenceEngine(
                settings.model_dir,
                device=settings.inference_device,
                batch_size=settings.inference_batch_size,
                threads=settings.inference_threads,
                precision=settings.inference_precision,
                tensorrt=settings.inference_tensorrt,
                tensorrt_cache=settings.data_dir / "tensorrt",
            ),
        )
        runtime.inference_error = None
    except Exception as exc:  # the server must come up to show why analysis is unavailable
        runtime.inference = None
        runtime.inference_error = f"the model in {runtime.settings.model_dir} could not be loaded: {exc}"
        log.error("%s", runtime.inference_error)


def check_schema(runtime: Runtime) -> None:
    """Record whether the database is at the latest migration (the worker needs it)."""
    from app.web.core.migrations import current_revision, head_revision

    url = runtime.settings.resolved_database_url
    try:
        current, head = current_revision(url), head_revision(url)
    except Exception as exc:
        runtime.schema_error = f"the database cannot be reached: {type(exc).__name__}"
    else:
        runtime.schema_error = (
            None if current == head else "the database is not migrated; run `fetalcns db upgrade`"
        )
    if runtime.schema_error:
        log.error("%s", runtime.schema_error)


def sweep_at_start(runtime: Runtime) -> None:
    """Remove what a crash left behind (app.web.services.sweep). Runs only on a migrated database:
    with the rows unreadable every blob would look orphaned. A failure is logged, never fatal."""
    from app.web.services.sweep import sweep

    settings = runtime.settings
    try:
        sweep(runtime.store, runtime.session_factory, settings.upload_tmp_dir, settings.sweep_grace_s)
    except Exception as exc:
        log.error("the start-up sweep failed (%s); nothing else is affected", type(exc).__name__)
