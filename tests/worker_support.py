"""Real `fetalcns worker` processes on the real Redis (or RabbitMQ) broker and PostgreSQL, and a
web app that only sends, for tests/test_worker_processes.py.

Each test gets its own queue name, so parallel checkouts and test runs never share messages;
its Redis keys are deleted at the end.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from web_support import WebHarness, dicom_bytes, reset_database, ultrasound_pixels

from app.web.app import create_app
from app.web.core.db import make_engine, make_session_factory
from app.web.core.models import Analysis, ImagePredictionRow, VerdictRow
from app.web.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# Another Redis database may be chosen where several checkouts share one server.
REDIS_URL = os.environ.get("FETALCNS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def study(seed: int, n_images: int = 1, size: tuple[int, int] = (120, 160)) -> list[tuple[str, bytes]]:
    """One study of ``n_images`` small synthetic DICOM frames of patient ``PID-<seed>``."""
    from pydicom.uid import generate_uid

    uid = generate_uid()
    return [
        (f"s{seed}-{i}.dcm", dicom_bytes(ultrasound_pixels(seed * 100 + i, *size), f"PID-{seed}", None, uid))
        for i in range(n_images)
    ]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def finished_ids(self) -> list[int]:
        """Analysis ids this worker wrote a result for (its "analysis N finished" log lines)."""
        ids = []
        for line in self.log().splitlines():
            if "analysis " in line and " finished:" in line:
                ids.append(int(line.split("analysis ", 1)[1].split(" ", 1)[0]))
        return ids

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class Cluster:
    """One database, storage and broker queue; web apps and worker processes started on it."""

    db_url: str
    broker_url: str
    queue: str
    data_dir: Path
    model_dir: Path
    lease_s: float = 3.0
    workers: list[WorkerProcess] = field(default_factory=list)
    clients: list[TestClient] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FETALCNS_")}
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            FETALCNS_DATA_DIR=str(self.data_dir),
            FETALCNS_DATABASE_URL=self.db_url,
            FETALCNS_MODEL_DIR=str(self.model_dir),
            FETALCNS_SECRET_KEY="worker-test-secret",
            FETALCNS_INFERENCE_DEVICE="cpu",
            FETALCNS_INFERENCE_THREADS="1",
            FETALCNS_BROKER_URL=self.broker_url,
            FETALCNS_BROKER_QUEUE=self.queue,
            FETALCNS_WORKER_LEASE_S=str(self.lease_s),
            FETALCNS_WORKER_POLL_S="0.5",
        )
        return env

    def start_worker(self, *args: str) -> WorkerProcess:
        log_path = self.data_dir / f"worker{len(self.workers)}.log"
        handle = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", *args],
            env=self.env(),
            cwd=REPO_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        worker = WorkerProcess(process, log_path)
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while "worker ready" not in worker.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{worker.log()[-3000:]}")
            time.sleep(0.1)
        return worker

    def web(self) -> WebHarness:
        """A web app (lifespan started) that sends analyses to the broker."""
        settings = Settings(
            data_dir=self.data_dir,
            database_url=self.db_url,
            model_dir=self.model_dir,
            secret_key="worker-test-secret",
            inference_device="cpu",
            inference_threads=1,
            broker_url=self.broker_url,
            broker_queue=self.queue,
            worker_lease_s=self.lease_s,
            sweep_on_start=False,
        )
        app = create_app(settings)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        self.clients.append(client)
        return WebHarness(client, settings, app, self.db_url)

    def analyses(self) -> list[Analysis]:
        engine = make_engine(self.db_url)
        try:
            with make_session_factory(engine)() as db:
                return list(db.scalars(select(Analysis).order_by(Analysis.id)))
        finally:
            engine.dispose()

    def result_rows(self, analysis_id: int) -> tuple[int, int]:
        engine = make_engine(self.db_url)
        try:
            with engine.connect() as connection:
                predictions = connection.scalar(
                    select(func.count())
                    .select_from(ImagePredictionRow)
                    .where(ImagePredictionRow.analysis_id == analysis_id)
                )
                verdicts = connection.scalar(
                    select(func.count()).select_from(VerdictRow).where(VerdictRow.analysis_id == analysis_id)
                )
            return int(predictions or 0), int(verdicts or 0)
        finally:
            engine.dispose()

    def wait(self, predicate: Callable[[list[Analysis]], bool], timeout: float) -> list[Analysis]:
        deadline = time.monotonic() + timeout
        while True:
            analyses = self.analyses()
            if predicate(analyses) or time.monotonic() > deadline:
                return analyses
            time.sleep(0.2)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for client in self.clients:
            client.__exit__(None, None, None)


def forget_redis_queue(queue: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"fetalcns:{queue}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def cluster_fixture(broker_url: str, db_url: str, model_dir: Path, tmp_path: Path) -> Iterator[Cluster]:
    reset_database(db_url)
    queue = f"fetalcns-test-{secrets.token_hex(4)}"
    cluster = Cluster(db_url, broker_url, queue, tmp_path / "var", model_dir)
    cluster.data_dir.mkdir()
    try:
        yield cluster
    finally:
        cluster.close()
        if broker_url.startswith("redis"):
            forget_redis_queue(queue)


def need(port: int, what: str) -> None:
    if not reachable(port):
        pytest.skip(f"{what} is not reachable at 127.0.0.1:{port}")


def statuses(analyses: list[Any]) -> list[str]:
    return [a.status for a in analyses]
