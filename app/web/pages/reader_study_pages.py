"""Reader-study pages: the list and the build form (administrators), the reading page (readers)
and the results with confusion matrices (administrators). Thin routes over the same services as
the JSON API, so the blinding rules are the API's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from app.web.core.input_guard import RowId
from app.web.core.models import User
from app.web.deps import DbSession, PageAdmin, PageUser, RuntimeDep
from app.web.errors import ServiceError
from app.web.pages.rendering import render
from app.web.schemas import ReaderStudyIn
from app.web.services.reader_reads import answer_read, next_read
from app.web.services.reader_results import reader_study_results
from app.web.services.reader_study_build import create_reader_study, get_reader_study, list_reader_studies

router = APIRouter(prefix="/reader-studies")


def _list_page(
    request: Request, user: User, db: Session, error: str | None = None, status_code: int = 200
) -> Response:
    return render(
        request,
        "reader/list.html",
        user,
        status_code=status_code,
        active="reader-studies",
        studies=list_reader_studies(db, user),
        error=error,
    )


@router.get("", include_in_schema=False)
def index(request: Request, user: PageUser, db: DbSession) -> Response:
    return _list_page(request, user, db)


def _ids(text: str) -> list[int]:
    parts = [p for p in text.replace(",", " ").split() if p]
    if not all(p.isdigit() for p in parts):
        raise ValueError("case numbers must be whole numbers separated by commas or spaces")
    return [int(p) for p in parts]


@router.post("", include_in_schema=False)
def create(
    request: Request,
    admin: PageAdmin,
    db: DbSession,
    runtime: RuntimeDep,
    name: Annotated[str, Form()] = "",
    study_ids: Annotated[str, Form()] = "",
    readers: Annotated[str, Form()] = "",
    modes: Annotated[list[str] | None, Form()] = None,
    design: Annotated[str, Form()] = "crossover",
    washout_days: Annotated[int, Form()] = 0,
    show_heatmaps: Annotated[str | None, Form()] = None,
    reference_csv: Annotated[str, Form()] = "",
    reference_from_diagnoses: Annotated[str | None, Form()] = None,
) -> Response:
    try:
        body = ReaderStudyIn(
            name=name,
            study_ids=_ids(study_ids),
            readers=[r for r in readers.replace(",", " ").split() if r],
            modes=modes or [],  # type: ignore[arg-type]
            design=design,  # type: ignore[arg-type]
            washout_days=washout_days,
            show_heatmaps=show_heatmaps is not None,
            reference_csv=reference_csv or None,
            reference_from_diagnoses=reference_from_diagnoses is not None,
        )
        study = create_reader_study(db, body, admin, list(runtime.class_names))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _list_page(request, admin, db, error=f"{where}: {first['msg']}", status_code=422)
    except (ValueError, ServiceError) as exc:
        db.rollback()
        message = exc.message if isinstance(exc, ServiceError) else str(exc)
        status = exc.status_code if isinstance(exc, ServiceError) else 422
        return _list_page(request, admin, db, error=message, status_code=status)
    return RedirectResponse(f"/reader-studies/{study.id}/results", status_code=303)


@router.get("/{reader_study_id}/read", include_in_schema=False)
def read_page(
    request: Request, reader_study_id: RowId, user: PageUser, db: DbSession, runtime: RuntimeDep
) -> Response:
    study = get_reader_study(db, reader_study_id)
    read = next_read(db, reader_study_id, user, list(runtime.class_names))
    return render(
        request,
        "reader/read.html",
        user,
        active="reader-studies",
        study_name=study.name,
        rs_id=study.id,
        read=read,
    )


@router.post("/{reader_study_id}/read/{read_id}", include_in_schema=False)
def read_answer(
    reader_study_id: RowId,
    read_id: RowId,
    user: PageUser,
    db: DbSession,
    runtime: RuntimeDep,
    label: Annotated[str, Form()] = "",
    confidence: Annotated[int, Form()] = 0,
) -> Response:
    answer_read(db, reader_study_id, read_id, user, label, confidence, list(runtime.class_names))
    return RedirectResponse(f"/reader-studies/{reader_study_id}/read", status_code=303)


@router.get("/{reader_study_id}/results", include_in_schema=False)
def results_page(
    request: Request, reader_study_id: RowId, admin: PageAdmin, db: DbSession, runtime: RuntimeDep
) -> Response:
    study = get_reader_study(db, reader_study_id)
    card = runtime.model_card
    normal = card.normal_class if card is not None else "normal"
    results = reader_study_results(db, study, admin, list(runtime.class_names), normal)
    return render(
        request, "reader/results.html", admin, active="reader-studies", study=study, results=results
    )
