"""`fetalcns worker` processes on the real Redis broker and PostgreSQL (issue 13): many studies
through two workers, none lost and none analysed twice; a worker killed with SIGKILL mid-job;
a second worker and a second web process started mid-analysis; and one run over RabbitMQ.

"Analysed once" is read three ways: ``analyses.attempts`` (claims), the result rows (one
prediction per image, one verdict) and the workers' own "analysis N finished" log lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_support import new_database
from worker_support import AMQP_URL, REDIS_URL, Cluster, cluster_fixture, need, study

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N_STUDIES = 50
# A study big enough that the kill lands while it is analysed (a few seconds on 2 busy cores).
SLOW_STUDY_IMAGES = 24


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    return new_database("postgres", tmp_path_factory, request.config)


@pytest.fixture
def cluster(pg_url: str, demo_model_dir: Path, tmp_path: Path) -> Iterator[Cluster]:
    need(6379, "Redis")
    yield from cluster_fixture(REDIS_URL, pg_url, demo_model_dir, tmp_path)


def _all_finished(analyses: list) -> bool:
    return bool(analyses) and all(a.status in ("done", "failed") for a in analyses)


def test_fifty_studies_through_two_workers_none_lost_none_twice(cluster: Cluster) -> None:
    first, second = cluster.start_worker(), cluster.start_worker()
    h = cluster.web()
    study_ids = []
    for seed in range(N_STUDIES):
        response = h.upload(study(seed))
        assert response.status_code == 202, response.text
        study_ids.append(response.json()["study_id"])
    assert len(set(study_ids)) == N_STUDIES

    analyses = cluster.wait(lambda a: len(a) == N_STUDIES and _all_finished(a), timeout=300)
    assert len(analyses) == N_STUDIES
    assert Counter(a.status for a in analyses) == {"done": N_STUDIES}
    assert all(a.attempts == 1 and a.lease_owner is None for a in analyses)
    assert all(cluster.result_rows(a.id) == (1, 1) for a in analyses)
    finished = first.finished_ids() + second.finished_ids()
    assert sorted(finished) == sorted(a.id for a in analyses)  # each written once, by one worker
    assert first.finished_ids() and second.finished_ids()  # both workers took part
    for study_id in study_ids:
        assert h.client.get(f"/api/v1/studies/{study_id}", headers=h.auth()).json()["status"] == "done"


def _wait_running(cluster: Cluster) -> None:
    analyses = cluster.wait(lambda a: bool(a) and a[0].status == "running", timeout=60)
    assert analyses[0].status == "running", [a.status for a in analyses]


def test_a_worker_killed_mid_job_its_study_still_ends_done_once(cluster: Cluster) -> None:
    victim = cluster.start_worker()
    h = cluster.web()
    assert h.upload(study(7, n_images=SLOW_STUDY_IMAGES, size=(240, 320))).status_code == 202
    _wait_running(cluster)
    victim.kill()
    assert cluster.analyses()[0].status == "running"  # killed before it could write anything
    assert victim.finished_ids() == []

    survivor = cluster.start_worker()
    (analysis,) = cluster.wait(_all_finished, timeout=180)
    assert analysis.status == "done"
    assert analysis.attempts == 2  # the killed claim and the retry after its lease expired
    assert cluster.result_rows(analysis.id) == (SLOW_STUDY_IMAGES, 1)
    assert survivor.finished_ids() == [analysis.id]


def test_a_second_worker_and_web_process_started_mid_analysis_change_nothing(cluster: Cluster) -> None:
    owner = cluster.start_worker()
    h = cluster.web()
    assert h.upload(study(9, n_images=SLOW_STUDY_IMAGES, size=(240, 320))).status_code == 202
    _wait_running(cluster)
    lease_owner = cluster.analyses()[0].lease_owner
    late_worker = cluster.start_worker()  # sends every queued or expired analysis at its start
    cluster.web()  # a second web process starts too
    running = cluster.analyses()[0]
    assert (running.status, running.lease_owner, running.attempts) in (
        ("running", lease_owner, 1),
        ("done", None, 1),  # the first worker may have finished meanwhile
    )

    (analysis,) = cluster.wait(_all_finished, timeout=180)
    assert (analysis.status, analysis.attempts) == ("done", 1)
    assert cluster.result_rows(analysis.id) == (SLOW_STUDY_IMAGES, 1)
    assert owner.finished_ids() == [analysis.id] and late_worker.finished_ids() == []


def test_a_study_through_a_worker_on_rabbitmq(pg_url: str, demo_model_dir: Path, tmp_path: Path) -> None:
    need(5672, "RabbitMQ")
    for cluster in cluster_fixture(AMQP_URL, pg_url, demo_model_dir, tmp_path):
        worker = cluster.start_worker("--concurrency", "2")
        h = cluster.web()
        study_ids = [h.upload(study(seed, n_images=2)).json()["study_id"] for seed in (1, 2, 3)]
        analyses = cluster.wait(lambda a: len(a) == 3 and _all_finished(a), timeout=120)
        assert [(a.status, a.attempts) for a in analyses] == [("done", 1)] * 3
        assert sorted(worker.finished_ids()) == sorted(a.id for a in analyses)
        assert all(h.wait_for(study_id)["status"] == "done" for study_id in study_ids)
