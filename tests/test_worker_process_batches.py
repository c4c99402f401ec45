"""`fetalcns worker` batches across studies (issue 16), with real worker processes on the real
Redis and RabbitMQ brokers and PostgreSQL: studies queued before the worker starts share the
model's batches, none is lost or analysed twice, and a worker SIGKILLed in the middle of a
multi-study batch leaves every study of it to end done exactly once after the leases expire.

Which studies shared a batch is read from the worker's log line "analyses 3,4,5 run together:
N images in M model batches" (analysis ids only); "analysed once" from ``analyses.attempts``, the
result rows and the "analysis N finished" lines, as in tests/test_worker_processes.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_support import new_database
from worker_support import AMQP_URL, REDIS_URL, Cluster, WorkerProcess, cluster_fixture, need, study

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

_BATCH_LINE = re.compile(r"analyses ([0-9,]+) run together: (\d+) images in (\d+) model batches")
# Big enough that the kill lands while the batch is scored (the existing kill test's study size).
SLOW_STUDY_IMAGES = 24


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    return new_database("postgres", tmp_path_factory, request.config)


def _batches(worker: WorkerProcess) -> list[tuple[list[int], int, int]]:
    """Each group the worker scored: its analysis ids, images and model batches."""
    return [
        ([int(i) for i in ids.split(",")], int(images), int(passes))
        for ids, images, passes in _BATCH_LINE.findall(worker.log())
    ]


def _all_finished(analyses: list) -> bool:
    return bool(analyses) and all(a.status in ("done", "failed") for a in analyses)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_studies_queued_before_the_worker_starts_share_model_batches(
    broker: str, pg_url: str, demo_model_dir: Path, tmp_path: Path
) -> None:
    need(*((6379, "Redis") if broker == "redis" else (5672, "RabbitMQ")))
    n_studies, batch_studies = 7, 4
    for cluster in cluster_fixture(
        REDIS_URL if broker == "redis" else AMQP_URL, pg_url, demo_model_dir, tmp_path
    ):
        h = cluster.web()
        study_ids = [h.upload(study(seed)).json()["study_id"] for seed in range(n_studies)]
        assert len(set(study_ids)) == n_studies
        assert [a.status for a in cluster.analyses()] == ["queued"] * n_studies

        worker = cluster.start_worker("--batch-studies", str(batch_studies))
        analyses = cluster.wait(lambda a: len(a) == n_studies and _all_finished(a), timeout=180)
        ids = sorted(a.id for a in analyses)
        assert [(a.status, a.attempts, a.lease_owner) for a in analyses] == [("done", 1, None)] * n_studies
        assert all(cluster.result_rows(a.id) == (1, 1) for a in analyses)
        assert sorted(worker.finished_ids()) == ids  # each written once

        batches = _batches(worker)
        grouped = [i for group, _, _ in batches for i in group]
        assert sorted(grouped) == ids  # each study scored in exactly one group
        assert max(len(group) for group, _, _ in batches) > 1
        assert all(len(group) <= batch_studies for group, _, _ in batches)
        assert all(images == len(group) for group, images, _ in batches)  # one image per study
        assert sum(passes for _, _, passes in batches) < n_studies  # fewer model passes than studies
        # The messages of the studies taken with another's were delivered later and did nothing.
        assert "left queued" not in worker.log() and "Traceback" not in worker.log()
        assert "PID-" not in worker.log()
        for study_id in study_ids:
            assert h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth()).json()["status"] == "done"


@pytest.fixture
def cluster(pg_url: str, demo_model_dir: Path, tmp_path: Path) -> Iterator[Cluster]:
    need(6379, "Redis")
    yield from cluster_fixture(REDIS_URL, pg_url, demo_model_dir, tmp_path)


def test_a_worker_killed_mid_batch_every_study_of_it_ends_done_once(cluster: Cluster) -> None:
    n_studies = 3
    h = cluster.web()
    for seed in range(n_studies):
        assert h.upload(study(20 + seed, n_images=SLOW_STUDY_IMAGES, size=(240, 320))).status_code == 202
    victim = cluster.start_worker("--batch-studies", str(n_studies))
    # Every study claimed by the victim at once: one batch in flight.
    analyses = cluster.wait(lambda a: [x.status for x in a] == ["running"] * n_studies, timeout=60)
    assert [a.status for a in analyses] == ["running"] * n_studies, [a.status for a in analyses]
    victim.kill()
    analyses = cluster.analyses()
    assert [(a.status, a.attempts) for a in analyses] == [("running", 1)] * n_studies  # nothing written
    assert len({a.lease_owner.rsplit(":", 1)[0] for a in analyses}) == 1  # all one process's
    assert victim.finished_ids() == [] and _batches(victim) == []

    survivor = cluster.start_worker()
    analyses = cluster.wait(_all_finished, timeout=240)
    assert Counter((a.status, a.attempts) for a in analyses) == {("done", 2): n_studies}
    assert all(cluster.result_rows(a.id) == (SLOW_STUDY_IMAGES, 1) for a in analyses)
    assert sorted(survivor.finished_ids()) == sorted(a.id for a in analyses)
