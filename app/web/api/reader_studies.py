"""Reader studies as JSON: build (administrators), read (the study's readers), results and export.

Thin routes over app.web.services.reader_study_build, reader_reads and reader_results.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.web.api.contract import ADMIN, CHANGE, SIGNED_IN, errors
from app.web.core.input_guard import RowId
from app.web.deps import ApiAdmin, ApiUser, DbSession, RuntimeDep
from app.web.schemas import (
    CreatedOut,
    NextReadOut,
    ReadAnswerIn,
    ReadAnswerOut,
    ReaderResultsOut,
    ReaderStudyIn,
    ReaderStudyOut,
    ReadRecordOut,
)
from app.web.services.reader_reads import answer_read, next_read, ping
from app.web.services.reader_results import export_reads, reader_study_results, reads_csv
from app.web.services.reader_study_build import (
    create_reader_study,
    get_reader_study,
    list_reader_studies,
    reader_study_out,
)

router = APIRouter(prefix="/reader-studies", tags=["reader studies"])


@router.post(
    "",
    status_code=201,
    response_model=CreatedOut,
    summary="Build a reader study (administrators)",
    response_description="the new study's id",
    responses=errors(*CHANGE, *ADMIN, 404),
)
def create(body: ReaderStudyIn, admin: ApiAdmin, db: DbSession, runtime: RuntimeDep) -> CreatedOut:
    """Analysed cases with a reference standard (``reference``, ``reference_csv`` or the signed
    final diagnoses), readers, modes and a design. Every reader's reads are planned at once, in a
    seeded random order per reader. 422 for a case that is not analysed or has no reference."""
    study = create_reader_study(db, body, admin, list(runtime.class_names))
    return CreatedOut(id=study.id)


@router.get(
    "",
    response_model=list[ReaderStudyOut],
    summary="List reader studies",
    response_description="all studies for an administrator; the studies one reads otherwise",
    responses=errors(*SIGNED_IN),
)
def index(user: ApiUser, db: DbSession) -> list[ReaderStudyOut]:
    """Each study's design and progress, never its reference or any answer."""
    return list_reader_studies(db, user)


@router.get(
    "/{reader_study_id}",
    response_model=ReaderStudyOut,
    summary="One reader study (administrators)",
    response_description="design and progress",
    responses=errors(*ADMIN, 404),
)
def one(reader_study_id: RowId, admin: ApiAdmin, db: DbSession) -> ReaderStudyOut:
    """Design, readers and how many reads are answered."""
    return reader_study_out(db, get_reader_study(db, reader_study_id))


@router.get(
    "/{reader_study_id}/next",
    response_model=NextReadOut,
    summary="The reader's next read",
    response_description="the read to do now; 204 when the reader is done",
    responses={
        204: {"description": "every read of this reader is answered"},
        **errors(*SIGNED_IN, 403, 404, 409),
    },
)
def next_(
    reader_study_id: RowId, user: ApiUser, db: DbSession, runtime: RuntimeDep
) -> NextReadOut | Response:
    """The open read, else the next one in the reader's order. ``study`` holds the AI fields only
    when the mode shows them. Showing starts the read's clock. 403 for a user who is not a reader
    of the study; 409 while the washout holds back the remaining reads."""
    read = next_read(db, reader_study_id, user, list(runtime.class_names))
    return Response(status_code=204) if read is None else read


@router.post(
    "/{reader_study_id}/reads/{read_id}",
    status_code=201,
    response_model=ReadAnswerOut,
    summary="Answer a read",
    response_description="recorded; in second-read mode the first answer returns the AI fields",
    responses=errors(*CHANGE, 404, 409),
)
def answer(
    reader_study_id: RowId,
    read_id: RowId,
    body: ReadAnswerIn,
    user: ApiUser,
    db: DbSession,
    runtime: RuntimeDep,
) -> ReadAnswerOut:
    """A class and a confidence of 1–5. The reading time is measured on the server. 409 when the
    read was not shown yet or is already answered."""
    return answer_read(
        db, reader_study_id, read_id, user, body.label, body.confidence, list(runtime.class_names)
    )


@router.post(
    "/{reader_study_id}/reads/{read_id}/activity",
    status_code=204,
    response_class=Response,
    summary="The reader is active on a read",
    response_description="the read's clock advanced",
    responses=errors(*CHANGE, 404),
)
def activity(reader_study_id: RowId, read_id: RowId, user: ApiUser, db: DbSession) -> Response:
    """Sent by the reader page while the reader works, so that only true absences (gaps longer than
    the study's idle threshold) are excluded from the reading time."""
    ping(db, reader_study_id, read_id, user)
    return Response(status_code=204)


@router.get(
    "/{reader_study_id}/results",
    response_model=ReaderResultsOut,
    summary="A reader study's results (administrators)",
    response_description="per mode (pooled and per reader), the AI alone, and the paired comparisons",
    responses=errors(*ADMIN, 404),
)
def results(reader_study_id: RowId, admin: ApiAdmin, db: DbSession, runtime: RuntimeDep) -> ReaderResultsOut:
    """``{modes: {MODE: {n_reads, accuracy, auc, misdiagnosis_rate, mean_read_time_s,
    median_read_time_s, sensitivity, specificity, confusion, per_reader}}, ai_alone, comparisons:
    [{a, b, metric, test, statistic, p_value, estimate, ci}]}`` over the answered reads."""
    card = runtime.model_card
    normal = card.normal_class if card is not None else "normal"
    return ReaderResultsOut.model_validate(
        reader_study_results(
            db, get_reader_study(db, reader_study_id), admin, list(runtime.class_names), normal
        )
    )


@router.get(
    "/{reader_study_id}/reads",
    response_model=list[ReadRecordOut],
    summary="Every read of a reader study (administrators)",
    response_description="each planned read with both answers, the reference, the AI and the times",
    responses=errors(*ADMIN, 404),
)
def reads(reader_study_id: RowId, admin: ApiAdmin, db: DbSession) -> list[ReadRecordOut]:
    """The export as JSON; unanswered reads have null answers."""
    return export_reads(db, get_reader_study(db, reader_study_id), admin)


@router.get(
    "/{reader_study_id}/reads.csv",
    response_class=Response,
    summary="Every read of a reader study as CSV (administrators)",
    response_description="the JSON export's fields as columns",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **errors(*ADMIN, 404)},
)
def reads_as_csv(reader_study_id: RowId, admin: ApiAdmin, db: DbSession) -> Response:
    """One row per planned read, the same fields as the JSON export."""
    records = export_reads(db, get_reader_study(db, reader_study_id), admin)
    return Response(
        reads_csv(records),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="reader-study-{reader_study_id}.csv"'},
    )
