"""DICOMweb (PS3.18) under /dicomweb: STOW-RS, QIDO-RS and WADO-RS, with the API's sign-in
(bearer token, or session cookie plus CSRF token on POST).

Not in the OpenAPI document: the standard is the contract (see docs/dicom.md). Errors are the
app's `{"detail"}` JSON like every other route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydicom.uid import ExplicitVRLittleEndian

from app.web.deps import ApiUser, ApiUserNoDb, DbSession, RuntimeDep
from app.web.dicom.deidentify import Deidentifier, can_deidentify
from app.web.dicom.multipart import MultipartError, read_parts, split_accept, write_parts
from app.web.dicom.stow import store_parts
from app.web.dicom.transcode import to_explicit_little_endian
from app.web.errors import InvalidInput, NotFound, ServiceError
from app.web.services.dicom_index import InstanceEntry, ResultProvider
from app.web.services.dicomweb import Level, instances_for, parse_query, search

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"], include_in_schema=False)
DICOM_JSON = "application/dicom+json"


class NotAcceptable(ServiceError):
    status_code = 406


class UnsupportedMediaType(ServiceError):
    status_code = 415


def _providers(request: Request) -> list[ResultProvider]:
    """The result objects (SR, SC, PDF) that join each study's instances; set by create_app."""
    return list(getattr(request.app.state, "dicom_result_providers", []))


def _instances(
    db: Any,
    runtime: Any,
    user: Any,
    request: Request,
    study: str,
    series: str | None,
    instance: str | None,
    *,
    deidentified: bool = False,
) -> list[InstanceEntry]:
    """The instances a WADO-RS request names, as this user may see them (results included)."""
    return instances_for(
        db,
        runtime.store,
        user,
        runtime.settings.assistance_mode,
        _providers(request),
        study,
        series,
        instance,
        deidentified=deidentified,
    )


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def _json(body: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, media_type=DICOM_JSON)


# ---- STOW-RS -----------------------------------------------------------------------------
@router.post("/studies")
async def stow(request: Request, user: ApiUserNoDb, runtime: RuntimeDep) -> JSONResponse:
    """Store instances: multipart/related; type="application/dicom". Answers the Store
    Instances Response (200 all stored, 202 some failed, 409 none stored)."""
    body = await request.body()
    try:
        parts = read_parts(request.headers.get("content-type", ""), body)
    except MultipartError as exc:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "multipart/related":
            raise UnsupportedMediaType(str(exc)) from None
        raise ServiceError(str(exc)) from None
    del body
    if not parts:
        raise ServiceError("the request holds no DICOM instance")
    if any(p.content_type != "application/dicom" for p in parts):
        raise UnsupportedMediaType(
            'every part must be application/dicom (multipart/related; type="application/dicom")'
        )
    answer, status = await run_in_threadpool(
        store_parts, runtime, [p.body for p in parts], user, _base_url(request)
    )
    return _json(answer, status)


# ---- QIDO-RS -----------------------------------------------------------------------------
def _search(
    request: Request,
    db: Any,
    runtime: Any,
    user: Any,
    level: Level,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> JSONResponse:
    try:
        query = parse_query(request.query_params.multi_items())
    except InvalidInput as exc:
        raise ServiceError(exc.message) from None
    found = search(
        db,
        runtime.store,
        user,
        runtime.settings.assistance_mode,
        _providers(request),
        level,
        query,
        _base_url(request),
        study_uid,
        series_uid,
    )
    return _json(found)


@router.get("/studies")
def search_studies(request: Request, db: DbSession, runtime: RuntimeDep, user: ApiUser) -> JSONResponse:
    return _search(request, db, runtime, user, "study")


@router.get("/series")
def search_all_series(request: Request, db: DbSession, runtime: RuntimeDep, user: ApiUser) -> JSONResponse:
    return _search(request, db, runtime, user, "series")


@router.get("/instances")
def search_all_instances(request: Request, db: DbSession, runtime: RuntimeDep, user: ApiUser) -> JSONResponse:
    return _search(request, db, runtime, user, "instance")


@router.get("/studies/{study}/series")
def search_series(
    request: Request, study: str, db: DbSession, runtime: RuntimeDep, user: ApiUser
) -> JSONResponse:
    return _search(request, db, runtime, user, "series", study)


@router.get("/studies/{study}/instances")
def search_study_instances(
    request: Request, study: str, db: DbSession, runtime: RuntimeDep, user: ApiUser
) -> JSONResponse:
    return _search(request, db, runtime, user, "instance", study)


@router.get("/studies/{study}/series/{series}/instances")
def search_series_instances(
    request: Request, study: str, series: str, db: DbSession, runtime: RuntimeDep, user: ApiUser
) -> JSONResponse:
    return _search(request, db, runtime, user, "instance", study, series)


# ---- WADO-RS -----------------------------------------------------------------------------
def _chosen_syntax(accept: str) -> str:
    """ "*" (as stored) or Explicit VR Little Endian, from the Accept header (PS3.18 8.7.3.5:
    without a transfer-syntax parameter, application/dicom means Explicit VR Little Endian)."""
    if not accept.strip():
        return "*"
    for media in split_accept(accept):
        inner = media.params.get("type", "") if media.type == "multipart/related" else media.type
        if media.type in ("*/*", "multipart/*") or inner in ("application/dicom", "*/*", ""):
            if media.type in ("*/*", "multipart/*"):
                return "*"
            syntax = media.params.get("transfer-syntax", str(ExplicitVRLittleEndian))
            if syntax in ("*", str(ExplicitVRLittleEndian)):
                return syntax
    raise NotAcceptable(
        'this server sends multipart/related; type="application/dicom" with transfer-syntax=* '
        "(as stored) or 1.2.840.10008.1.2.1"
    )


def _retrieve(
    request: Request,
    db: Any,
    runtime: Any,
    user: Any,
    study: str,
    series: str | None = None,
    instance: str | None = None,
) -> Response:
    syntax = _chosen_syntax(request.headers.get("accept", ""))
    deidentify = request.query_params.get("deidentify")
    if deidentify not in (None, "basic"):
        raise ServiceError(
            "deidentify must be basic (the PS3.15 Basic Application Level Confidentiality Profile)"
        )
    found = _instances(
        db, runtime, user, request, study, series, instance, deidentified=deidentify is not None
    )
    encode: Callable[[InstanceEntry], bytes] = (
        (lambda i: i.load()) if syntax == "*" else (lambda i: to_explicit_little_endian(i.load()))
    )
    if deidentify is not None:
        # The SR's free text and the PDF cannot be cleaned by the profile: they are left out.
        found = [i for i in found if can_deidentify(i.header.get("SOPClassUID", ""))]
        if not found:
            raise NotFound("nothing here can be exported de-identified (reports are left out)")
        cleaner = Deidentifier(runtime.settings.resolved_secret_key())
        plain = encode

        def encode(entry: InstanceEntry) -> bytes:
            return cleaner.apply(plain(entry))

    content_type, body = write_parts((encode(i) for i in found), "application/dicom", syntax)
    return Response(body, media_type=content_type)


@router.get("/studies/{study}")
def retrieve_study(
    request: Request, study: str, db: DbSession, runtime: RuntimeDep, user: ApiUser
) -> Response:
    return _retrieve(request, db, runtime, user, study)


@router.get("/studies/{study}/series/{series}")
def retrieve_series(
    request: Request, study: str, series: str, db: DbSession, runtime: RuntimeDep, user: ApiUser
) -> Response:
    return _retrieve(request, db, runtime, user, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}")
def retrieve_instance(
    request: Request,
    study: str,
    series: str,
    instance: str,
    db: DbSession,
    runtime: RuntimeDep,
    user: ApiUser,
) -> Response:
    return _retrieve(request, db, runtime, user, study, series, instance)


def _metadata(
    db: Any, runtime: Any, user: Any, request: Request, study: str, series: str | None, instance: str | None
) -> JSONResponse:
    import io

    import pydicom

    found = _instances(db, runtime, user, request, study, series, instance)
    answer = []
    for entry in found:
        # Pixel data is left out (stop_before_pixels); other binary values are inlined (small).
        ds = pydicom.dcmread(io.BytesIO(entry.load()), stop_before_pixels=True)
        answer.append(ds.to_json_dict(bulk_data_threshold=16 * 1024 * 1024))
    return _json(answer)


@router.get("/studies/{study}/metadata")
def study_metadata(
    request: Request, study: str, db: DbSession, runtime: RuntimeDep, user: ApiUser
) -> JSONResponse:
    return _metadata(db, runtime, user, request, study, None, None)


@router.get("/studies/{study}/series/{series}/metadata")
def series_metadata(
    request: Request, study: str, series: str, db: DbSession, runtime: RuntimeDep, user: ApiUser
) -> JSONResponse:
    return _metadata(db, runtime, user, request, study, series, None)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
def instance_metadata(
    request: Request,
    study: str,
    series: str,
    instance: str,
    db: DbSession,
    runtime: RuntimeDep,
    user: ApiUser,
) -> JSONResponse:
    return _metadata(db, runtime, user, request, study, series, instance)
