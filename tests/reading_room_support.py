"""Many cases at once for the worklist tests: rows written straight into the real database
(patients, studies, done analyses and verdicts), as the upload and the worker would leave them,
without decoding or analysing an image each (600 cases take about a second, not an hour)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from app.web.core.db import utcnow
from app.web.core.models import Analysis, Patient, Study, VerdictRow

CLASSES = ("Anencephaly", "Encephalocele_meningocele", "Holoprosencephaly", "normal", "Rachischisis")


def verdict_for(n: int) -> tuple[str, float | None]:
    """Case n's verdict: every 7th indeterminate, every 3rd normal, the rest an anomaly."""
    if n % 7 == 0:
        return "indeterminate", None
    if n % 3 == 0:
        return "normal", round(0.05 + (n % 40) / 100, 3)
    return CLASSES[n % 5 if n % 5 != 3 else 0], round(0.5 + (n % 50) / 100, 3)


def seed_cases(engine: Engine, n: int, prefix: str = "BULK") -> list[int]:
    """``n`` analysed cases, patient IDs ``{prefix}-00001``…, study dates one day apart (the
    last the newest); returns the study ids in creation order."""
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            insert(Patient),
            [
                {
                    "patient_key": f"{prefix.lower()}-{i:05d}",
                    "patient_id": f"{prefix}-{i:05d}",
                    "name": f"Bulk^Patient{i:05d}",
                    "created_at": now,
                }
                for i in range(1, n + 1)
            ],
        )
        patients = dict(
            connection.execute(
                select(Patient.patient_id, Patient.id).where(Patient.patient_id.like(f"{prefix}-%"))
            ).all()
        )
        first_day = date(2024, 1, 1)
        connection.execute(
            insert(Study),
            [
                {
                    "patient_id": patients[f"{prefix}-{i:05d}"],
                    "study_uid": f"1.2.826.0.1.3680043.10.999.{prefix.lower()}.{i}",
                    "study_date": first_day + timedelta(days=i),
                    "gestational_age_weeks": 18 + (i % 10),
                    "status": "done",
                    "created_at": now + timedelta(microseconds=i),
                }
                for i in range(1, n + 1)
            ],
        )
        studies = list(
            connection.execute(
                select(Study.id).where(Study.patient_id.in_(list(patients.values()))).order_by(Study.id)
            ).scalars()
        )
        connection.execute(
            insert(Analysis),
            [{"study_id": sid, "status": "done", "timings": {}, "created_at": now} for sid in studies],
        )
        analyses = dict(
            connection.execute(
                select(Analysis.study_id, Analysis.id).where(Analysis.study_id.in_(studies))
            ).all()
        )
        rows = []
        for i, sid in enumerate(studies, start=1):
            label, p = verdict_for(i)
            rows.append(
                {
                    "analysis_id": analyses[sid],
                    "label": label,
                    "probabilities": {} if p is None else {label: 1.0 - (p if label == "normal" else 0.0)},
                    "p_abnormal": p,
                    "reason": "too few usable images" if p is None else None,
                    "aggregation": "mean",
                    "support": [],
                    "n_used": 0 if p is None else 3,
                    "n_excluded": 3 if p is None else 0,
                    "n_total": 3,
                    "excluded_by_reason": {"quality": 3} if p is None else {},
                }
            )
        connection.execute(insert(VerdictRow), rows)
    return studies
