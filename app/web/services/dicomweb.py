"""DICOMweb searches (QIDO-RS) and retrievals (WADO-RS) over the DICOM index, audited.

Answers are DICOM JSON (PS3.18 F.2) built here; HTTP (media types, multipart) is the route's.
Matching follows PS3.18 8.3.4 for what a reading room asks: single values, UID lists, date
ranges, ``*``/``?`` wildcards (case-insensitive for names); attributes we do not keep match
only an empty query.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import Tag
from sqlalchemy.orm import Session

from app.web.core.models import User
from app.web.core.storage import ContentStore
from app.web.errors import InvalidInput, NotFound
from app.web.services.audit import record_event
from app.web.services.dicom_index import InstanceEntry, ResultProvider, StudyEntry, load_studies

Level = Literal["study", "series", "instance"]
# Query parameters that are not attribute matches (PS3.18 8.3.4.1).
CONTROL_PARAMS = frozenset({"limit", "offset", "includefield", "fuzzymatching", "orderby"})
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Query:
    matches: dict[str, str]  # keyword -> value
    limit: int
    offset: int
    include: frozenset[str]  # keywords to add; "all" adds every kept attribute


def _keyword(name: str) -> str:
    """An attribute named by keyword or by tag ("0020000D"); raises InvalidInput otherwise."""
    if tag_for_keyword(name) is not None:
        return name
    if len(name) == 8:
        try:
            keyword = keyword_for_tag(Tag(int(name, 16)))
        except ValueError:
            keyword = ""
        if keyword:
            return keyword
    raise InvalidInput(f"unknown DICOM attribute {name!r} in the query")


def parse_query(params: Iterable[tuple[str, str]]) -> Query:
    matches: dict[str, str] = {}
    include: set[str] = set()
    limit, offset = 100, 0
    for name, value in params:
        if name == "limit":
            limit = _count("limit", value, 1, MAX_LIMIT)
        elif name == "offset":
            offset = _count("offset", value, 0, 10**9)
        elif name == "includefield":
            include.update(
                "all" if v.strip() == "all" else _keyword(v.strip()) for v in value.split(",") if v
            )
        elif name in CONTROL_PARAMS:
            continue
        else:
            matches[_keyword(name)] = value
    return Query(matches, limit, offset, frozenset(include))


def _count(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise InvalidInput(f"{name} must lie between {low} and {high}")
    return number


def _matches(keyword: str, wanted: str, values: list[str]) -> bool:
    """Does one of ``values`` (an attribute's values; a study has several modalities) match?"""
    if wanted == "":
        return True  # universal matching: the attribute is only asked for
    vr = dictionary_VR(keyword)
    if vr == "UI":
        uids = {u.strip() for u in wanted.replace("\\", ",").split(",") if u.strip()}
        return any(v in uids for v in values)
    if vr in ("DA", "TM", "DT") and "-" in wanted:
        low, _, high = wanted.partition("-")
        return any(v and (not low or v >= low) and (not high or v[: len(high)] <= high) for v in values)
    if "*" in wanted or "?" in wanted or vr == "PN":
        pattern = wanted.lower() if vr == "PN" else wanted
        return any(fnmatch.fnmatchcase(v.lower() if vr == "PN" else v, pattern) for v in values)
    return any(v == wanted for v in values)


def _element(keyword: str, value: Any) -> dict[str, Any]:
    vr = dictionary_VR(keyword)
    if value in (None, "", []):
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    if vr in ("IS", "US", "UL", "SL", "SS"):
        return {"vr": vr, "Value": [int(v) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def to_json(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        f"{tag_for_keyword(k):08X}": _element(k, v)
        for k, v in sorted(attributes.items(), key=lambda i: tag_for_keyword(i[0]) or 0)
    }


# ---- the three levels --------------------------------------------------------------------
def _study_attributes(entry: StudyEntry, base_url: str) -> dict[str, Any]:
    first = entry.instances[0].header if entry.instances else {}
    study = entry.study
    series = {i.series_uid for i in entry.instances}
    return {
        "StudyInstanceUID": entry.study_uid,
        "StudyDate": study.study_date.strftime("%Y%m%d") if study.study_date else first.get("StudyDate", ""),
        "StudyTime": first.get("StudyTime", ""),
        "AccessionNumber": first.get("AccessionNumber", ""),
        "ReferringPhysicianName": first.get("ReferringPhysicianName", ""),
        "StudyID": first.get("StudyID", ""),
        "StudyDescription": first.get("StudyDescription", ""),
        "PatientName": study.patient.name or "",
        "PatientID": study.patient.patient_id or "",
        "PatientBirthDate": first.get("PatientBirthDate", ""),
        "PatientSex": first.get("PatientSex", ""),
        "ModalitiesInStudy": sorted({i.header.get("Modality", "") for i in entry.instances} - {""}),
        "NumberOfStudyRelatedSeries": len(series),
        "NumberOfStudyRelatedInstances": len(entry.instances),
        "InstanceAvailability": "ONLINE",
        "RetrieveURL": f"{base_url}/studies/{entry.study_uid}",
    }


def _series_attributes(entry: StudyEntry, instances: list[InstanceEntry], base_url: str) -> dict[str, Any]:
    header = instances[0].header
    series_uid = instances[0].series_uid
    return {
        "StudyInstanceUID": entry.study_uid,
        "SeriesInstanceUID": series_uid,
        "Modality": header.get("Modality", ""),
        "SeriesNumber": header.get("SeriesNumber", ""),
        "SeriesDescription": header.get("SeriesDescription", ""),
        "NumberOfSeriesRelatedInstances": len(instances),
        "RetrieveURL": f"{base_url}/studies/{entry.study_uid}/series/{series_uid}",
    }


def _instance_attributes(entry: StudyEntry, instance: InstanceEntry, base_url: str) -> dict[str, Any]:
    header = instance.header
    attributes = {
        k: header.get(k, "")
        for k in ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "NumberOfFrames")
    }
    attributes.update(
        StudyInstanceUID=entry.study_uid,
        SeriesInstanceUID=instance.series_uid,
        Modality=header.get("Modality", ""),
        AvailableTransferSyntaxUID=instance.transfer_syntax,
        RetrieveURL=f"{base_url}/studies/{entry.study_uid}/series/{instance.series_uid}/instances/"
        f"{instance.sop_instance_uid}",
    )
    return attributes


def _by_series(instances: list[InstanceEntry]) -> dict[str, list[InstanceEntry]]:
    groups: dict[str, list[InstanceEntry]] = {}
    for instance in instances:
        groups.setdefault(instance.series_uid, []).append(instance)
    return groups


def _select(rows: list[tuple[dict[str, Any], dict[str, Any]]], query: Query) -> list[dict[str, Any]]:
    """Filter (attributes, extra values for matching) rows by the query, page them, and add the
    attributes the query matched on or asked for (kept ones only)."""
    chosen = []
    for attributes, extra in rows:
        values = {**extra, **attributes}
        ok = True
        for keyword, wanted in query.matches.items():
            value = values.get(keyword, "")
            listed = [str(v) for v in value] if isinstance(value, list) else [str(value)]
            if not _matches(keyword, wanted, listed):
                ok = False
                break
        if ok:
            shown = dict(attributes)
            for keyword in set(query.matches) | query.include:
                if keyword in extra:
                    shown[keyword] = extra[keyword]
            if "all" in query.include:
                shown.update(extra)
            chosen.append(shown)
    return [to_json(a) for a in chosen[query.offset : query.offset + query.limit]]


def search(
    db: Session,
    store: ContentStore,
    viewer: User,
    mode: str,
    providers: list[ResultProvider],
    level: Level,
    query: Query,
    base_url: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> list[dict[str, Any]]:
    """QIDO-RS at ``level``, within a study (and series) when given. Audited: the level, the
    names of the attributes matched on (never their values) and the number of results."""
    uid = study_uid or _single_uid(query.matches.get("StudyInstanceUID"))
    studies = load_studies(db, store, viewer, mode, providers, uid)
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for entry in studies:
        if not entry.instances:
            continue
        if level == "study":
            rows.append((_study_attributes(entry, base_url), {}))
            continue
        groups = _by_series(entry.instances)
        study_values = _study_attributes(entry, base_url)
        for uid_, instances in groups.items():
            if series_uid is not None and uid_ != series_uid:
                continue
            if level == "series":
                rows.append((_series_attributes(entry, instances, base_url), study_values))
            else:
                for instance in instances:
                    series_values = _series_attributes(entry, instances, base_url)
                    rows.append(
                        (_instance_attributes(entry, instance, base_url), {**study_values, **series_values})
                    )
    answer = _select(rows, query)
    record_event(
        db,
        viewer,
        "dicomweb.search",
        level=level,
        matched_on=sorted(query.matches),
        n_results=len(answer),
        study_ids=sorted({e.study.id for e in studies})[:100] if (study_uid or series_uid) else None,
    )
    db.commit()
    return answer


def _single_uid(value: str | None) -> str | None:
    if value and "," not in value and "\\" not in value and "*" not in value and "?" not in value:
        return value.strip()
    return None


def instances_for(
    db: Session,
    store: ContentStore,
    viewer: User,
    mode: str,
    providers: list[ResultProvider],
    study_uid: str,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    deidentified: bool = False,
) -> list[InstanceEntry]:
    """The instances WADO-RS returns; NotFound when there are none. Audited as a view of each
    study ("dicomweb.retrieve") with the number of instances."""
    found: list[InstanceEntry] = []
    studies = load_studies(db, store, viewer, mode, providers, study_uid)
    for entry in studies:
        chosen = [
            i
            for i in entry.instances
            if (series_uid is None or i.series_uid == series_uid)
            and (sop_instance_uid is None or i.sop_instance_uid == sop_instance_uid)
        ]
        if chosen:
            record_event(
                db,
                viewer,
                "dicomweb.retrieve",
                study_id=entry.study.id,
                n_instances=len(chosen),
                n_results=sum(1 for i in chosen if i.is_result),
                deidentified=deidentified,
            )
        found.extend(chosen)
    db.commit()
    if not found:
        what = "instance" if sop_instance_uid else "series" if series_uid else "study"
        raise NotFound(f"no such {what} here")
    return found
