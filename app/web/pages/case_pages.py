"""The case page: viewer, AI findings, diagnosis form and history; and its status poll."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse, RedirectResponse, Response

from app.biometry.references import REFERENCES
from app.web.core.input_guard import RowId
from app.web.core.models import User
from app.web.core.templating import human_label
from app.web.deps import DbSession, PageUser, RuntimeDep
from app.web.errors import NotFound, ServiceError
from app.web.pages.rendering import render
from app.web.pages.views import (
    CONFIDENCE_LEVELS,
    case_page,
    case_status_item,
    diagnosis_item,
    model_summary,
    next_diagnosis_form,
)
from app.web.runtime import Runtime
from app.web.schemas import ChecklistIn
from app.web.services.claims import assign, claim_view, release_lock, take_lock
from app.web.services.cns_checklist import ANSWER_WORDS, ISUOG_ITEMS, current_checklist, save_checklist
from app.web.services.diagnoses import record_diagnosis
from app.web.services.measurements import study_measurements
from app.web.services.studies import get_study
from app.web.services.users import list_users

router = APIRouter()

# The caliper menu: (value, words, how it is drawn).
MEASURE_CHOICES = [
    *((name, f"{ref.title} ({name})", ref.kind) for name, ref in REFERENCES.items()),
    ("OTHER", "Other distance", "distance"),
    ("OTHER", "Other ellipse (circumference)", "ellipse"),
]
NOTICES = {
    "draft": "You were signed out before your read was sent. It is filled in again below from this "
    "browser's draft: check it and send it again.",
    "taken": "You have taken over reading this case.",
    "assigned": "Assignment saved.",
    "bad-assignee": "Choose an active user to assign the case to.",
}


def normal_class(runtime: Runtime) -> str:
    card = runtime.model_card
    return card.normal_class if card is not None else "normal"


def case_status_url(case_id: int | str) -> str:
    return f"/cases/{case_id}/status"


def _case_response(
    request: Request,
    user: User,
    db: Session,
    runtime: Runtime,
    case_id: int,
    *,
    form_error: str | None = None,
    form_notice: str | None = None,
    form_values: dict[str, Any] | None = None,
    status_code: int = 200,
    notice: str | None = None,
) -> Response:
    mode = runtime.settings.assistance_mode
    try:
        detail = get_study(db, case_id, user, mode)
    except NotFound:
        return _case_not_found(request, user, case_id)
    card = runtime.model_card
    classes = runtime.class_names
    form = next_diagnosis_form(detail, human_label)
    # Opening the case takes the soft reading lock unless another reader holds it (then the page
    # says who); the open page renews it (POST /cases/{id}/lock).
    claim = take_lock(db, case_id, user)
    return render(
        request,
        "case.html",
        user,
        status_code=status_code,
        case=case_page(
            detail,
            classes,
            normal_class(runtime),
            human_label,
            case_status_url(case_id),
            card.lossy_policy if card is not None else "warn",
            runtime.settings.max_cine_frames,
        ),
        measure_names=MEASURE_CHOICES,
        ai_visible=not detail.ai_withheld,
        model=model_summary(card, detail.analysis.model_sha256 if detail.analysis else None),
        diagnoses=[diagnosis_item(d, human_label) for d in reversed(detail.diagnoses)],
        confidence_levels=CONFIDENCE_LEVELS,
        form={
            **form.__dict__,
            "action": f"/cases/{case_id}/diagnosis",
            "analysis_id": detail.analysis.id if detail.analysis else None,
            "based_on": detail.current_diagnosis_id or 0,
            "error": form_error,
            "notice": form_notice,
            # Not "values": on a dict, Jinja's form.values is the dict's method, and a rejected
            # read came back empty.
            "typed": form_values or {},
            "draft_key": f"fetalcns.draft.{user.id}.{case_id}",
            "saved": form_notice is not None and form_error is None,
        },
        claim=claim,
        lock_url=f"/cases/{case_id}/lock",
        assign_url=f"/cases/{case_id}/assign",
        readers=[u for u in list_users(db) if u.active],
        notice=NOTICES.get(notice or ""),
    )


@router.get("/cases/{case_id}", include_in_schema=False)
def case(
    request: Request,
    case_id: RowId,
    user: PageUser,
    db: DbSession,
    runtime: RuntimeDep,
    saved: str | None = None,
    done: str | None = None,
) -> Response:
    notice = {
        "final": "Diagnosis signed off.",
        "amendment": "Amendment recorded.",
        "preliminary": "Preliminary read recorded. The AI result is now shown.",
    }.get(saved or "")
    return _case_response(request, user, db, runtime, case_id, form_notice=notice, notice=done)


@router.get("/cases/{case_id}/diagnosis", include_in_schema=False)
def diagnosis_after_sign_in(case_id: RowId, user: PageUser) -> Response:
    """Where a read posted with an expired session lands after the new sign-in (the sign-in
    returns to the address that needed it): the case, whose page restores the unsent read from
    the browser's draft."""
    return RedirectResponse(f"/cases/{case_id}?done=draft", status_code=303)


@router.post("/cases/{case_id}/lock", include_in_schema=False)
def renew_lock(
    case_id: RowId,
    user: PageUser,
    db: DbSession,
    take_over: Annotated[str, Form()] = "",
    release: Annotated[str, Form()] = "",
) -> Response:
    """The open case page's heartbeat (JSON), its "take over" button and its release on leaving."""
    try:
        if release:
            release_lock(db, case_id, user)
            view = claim_view(None)
        else:
            view = take_lock(db, case_id, user, take_over=bool(take_over))
    except NotFound:
        return JSONResponse({"detail": f"case {case_id} does not exist"}, status_code=404)
    if take_over:
        return RedirectResponse(f"/cases/{case_id}?done=taken", status_code=303)
    return JSONResponse(
        {
            "locked_by": view.locked_by,
            "mine": view.locked_by_id == user.id,
            "expires_at": view.lock_expires_at.isoformat() if view.lock_expires_at else None,
        }
    )


@router.post("/cases/{case_id}/assign", include_in_schema=False)
def assign_case(
    request: Request,
    case_id: RowId,
    user: PageUser,
    db: DbSession,
    runtime: RuntimeDep,
    assignee: Annotated[str, Form()] = "",
) -> Response:
    """Assign the case to a reader (any signed-in user may: reading rooms share out their own
    work); an empty choice unassigns it. Audited."""
    try:
        assign(db, case_id, user, int(assignee) if assignee.isdigit() else None)
    except NotFound:
        raise
    except ServiceError as exc:
        db.rollback()
        return _case_response(
            request,
            user,
            db,
            runtime,
            case_id,
            form_error=None,
            status_code=exc.status_code,
            notice="bad-assignee",
        )
    return RedirectResponse(f"/cases/{case_id}?done=assigned", status_code=303)


@router.get("/cases/{case_id}/status", include_in_schema=False)
def case_status(case_id: RowId, user: PageUser, db: DbSession, runtime: RuntimeDep) -> Response:
    """What the upload and case pages poll while analysis runs.

    Not audited: GET /api/v1/studies/{id} records a case view per call, and a
    poll every few seconds would bury the real views in the audit trail.
    """
    try:
        detail = get_study(db, case_id, user, runtime.settings.assistance_mode, audit=False)
    except NotFound:
        return JSONResponse({"detail": f"case {case_id} does not exist"}, status_code=404)
    return JSONResponse(case_status_item(detail))


def _case_not_found(request: Request, user: User, case_id: int) -> Response:
    return render(
        request,
        "error.html",
        user,
        status_code=404,
        title="Case not found",
        message=f"There is no case #{case_id}. It may have been entered wrongly.",
    )


def _parse_confidence(text: str) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


@router.post("/cases/{case_id}/diagnosis", include_in_schema=False)
def submit_diagnosis(
    request: Request,
    case_id: RowId,
    user: PageUser,
    db: DbSession,
    runtime: RuntimeDep,
    kind: Annotated[str, Form()] = "final",
    label: Annotated[str, Form()] = "",
    agrees_with_ai: Annotated[str, Form()] = "",
    confidence: Annotated[str, Form()] = "",
    notes: Annotated[str, Form()] = "",
    amendment_reason: Annotated[str, Form()] = "",
    based_on: Annotated[str, Form()] = "",
) -> Response:
    values = {
        "label": label,
        "agrees_with_ai": agrees_with_ai,
        "confidence": confidence,
        "notes": notes,
        "amendment_reason": amendment_reason,
    }
    error: str | None = None
    status_code = 422
    recorded_kind = kind
    if not label:
        error = "Choose a diagnosis."
    elif _parse_confidence(confidence) is None:
        error = "Choose how confident you are (1 to 5)."
    else:
        try:
            recorded = record_diagnosis(
                db,
                case_id,
                user,
                label=label,
                allowed_labels=runtime.class_names,
                # Derived from the chosen class and the AI verdict (record_diagnosis), never typed:
                # a ticked "Agree" beside a contradicting class was stored as it was.
                agrees_with_ai=None,
                confidence=_parse_confidence(confidence),
                notes=notes,
                kind=kind,
                reason=amendment_reason,
                # The version of the case the form was rendered from (see StudyOut.current_diagnosis_id).
                based_on=int(based_on) if based_on.isdigit() else None,
            )
            recorded_kind = recorded.kind
        except NotFound:
            raise
        except ServiceError as exc:
            error = exc.message[:1].upper() + exc.message[1:] + "."
            status_code = exc.status_code
    if error is not None:
        return _case_response(
            request, user, db, runtime, case_id, form_error=error, form_values=values, status_code=status_code
        )
    return RedirectResponse(f"/cases/{case_id}?saved={recorded_kind}", status_code=303)


REPORT_FIGURES = 6


def _report_figures(groups: list[dict[str, Any]], ai_visible: bool) -> list[dict[str, Any]]:
    """The report's figures: the first entries of the strip (most supportive first), a loop by its
    most suspicious frame, each with its heatmap when the AI is shown."""
    figures = []
    for group in groups[:REPORT_FIGURES]:
        pick = group.get("most_suspicious")
        frame = group["frames"][pick if pick is not None else 0]
        figures.append(
            {
                "caption": frame["filename"]
                + (f", frame {frame['frame'] + 1}" if frame["frame"] is not None else ""),
                "original_url": frame["original_url"],
                "heatmap_url": frame["heatmap_url"] if ai_visible else None,
                "human": frame["human"] if ai_visible else None,
            }
        )
    return figures


@router.get("/cases/{case_id}/report", include_in_schema=False)
def case_report(
    request: Request,
    case_id: RowId,
    user: PageUser,
    db: DbSession,
    runtime: RuntimeDep,
    saved: str | None = None,
) -> Response:
    """The structured report: ISUOG checklist (editable), biometry, AI verdict and heatmaps, diagnosis."""
    try:
        detail = get_study(db, case_id, user, runtime.settings.assistance_mode)
    except NotFound:
        return _case_not_found(request, user, case_id)
    card = runtime.model_card
    page = case_page(
        detail,
        runtime.class_names,
        normal_class(runtime),
        human_label,
        case_status_url(case_id),
        card.lossy_policy if card is not None else "warn",
        runtime.settings.max_cine_frames,
    )
    ai_visible = not detail.ai_withheld
    finals = [d for d in detail.diagnoses if d.kind in ("final", "amendment")]
    return render(
        request,
        "report.html",
        user,
        case=page,
        ai_visible=ai_visible,
        checklist=current_checklist(db, case_id),
        answers=ANSWER_WORDS,
        measurements=study_measurements(db, case_id),
        figures=_report_figures(page["groups"], ai_visible),
        diagnosis=diagnosis_item(finals[-1], human_label) if finals else None,
        model=model_summary(card, detail.analysis.model_sha256 if detail.analysis else None),
        pdf_url=f"/api/v1/studies/{case_id}/report.pdf" if detail.status == "done" and ai_visible else None,
        saved=saved == "checklist",
    )


@router.post("/cases/{case_id}/report/checklist", include_in_schema=False)
async def submit_checklist(request: Request, case_id: RowId, user: PageUser, db: DbSession) -> Response:
    """Record the ISUOG checklist from the report page's form (one radio group per item)."""
    form = await request.form()
    answers = {
        key: str(form[f"item_{key}"])
        for key, _ in ISUOG_ITEMS
        if str(form.get(f"item_{key}", "")) in ANSWER_WORDS
    }
    comment = str(form.get("comment", ""))[:4000]
    save_checklist(db, case_id, user, ChecklistIn(items=answers, comment=comment))  # type: ignore[arg-type]
    return RedirectResponse(f"/cases/{case_id}/report?saved=checklist", status_code=303)
