"""View models for the HTML pages: plain dicts built from the study services' models (app.web.schemas).

Pure functions, so that what a radiologist sees (ordering, what is withheld,
which form is offered) is tested without a browser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from app.modelcard import metric_interval
from app.web.schemas import DiagnosisOut, ImageOut, StudyOut, VerdictOut

HumanLabel = Callable[[str | None], str]

# The aggregate's label when the verdict gate refuses (app.inference.aggregate.INDETERMINATE);
# spelled out so that the pages never import the inference package.
INDETERMINATE = "indeterminate"
INDETERMINATE_TEXT = "No verdict — indeterminate"

# Why images were left out of the verdict (VerdictOut.excluded_by_reason keys), in a reader's words.
EXCLUSION_TEXT: dict[str, str] = {
    "not_ultrasound": "not ultrasound (another modality or a colour picture)",
    "ood": "unlike the training images (out of distribution)",
    "view": "an ultrasound view this model was not trained on",
    "quality": "blank or poor quality",
    "lossy": "lossily compressed (the model card leaves them out)",
    "failed": "could not be analysed",
    "flagged": "flagged as unusable",
}

STATUS_TEXT: dict[str, str] = {
    "queued": "Waiting for analysis",
    "running": "Analysing…",
    "done": "Analysed",
    "failed": "Analysis failed",
}
KIND_TEXT: dict[str, str] = {
    "preliminary": "Preliminary read",
    "final": "Final diagnosis",
    "amendment": "Amendment",
}
CONFIDENCE_LEVELS: tuple[tuple[int, str], ...] = (
    (1, "very unsure"),
    (2, "unsure"),
    (3, "fairly sure"),
    (4, "sure"),
    (5, "certain"),
)


def format_datetime(value: datetime | None, seconds: bool = False) -> str:
    """UTC, so that times read the same for every user; the audit trail needs seconds."""
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def format_date(value: date | None) -> str | None:
    return value.isoformat() if value else None


def format_duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def person_name(value: str | None) -> str | None:
    """DICOM "Family^Given^Middle^Prefix^Suffix" as "Family, Given Middle"; other text unchanged."""
    if not value or "^" not in value:
        return value
    parts = value.split("=")[0].split("^")
    given = " ".join(p for p in parts[1:3] if p)
    return f"{parts[0]}, {given}" if given else parts[0]


def short_label(human: str) -> str:
    """A thumbnail tag: the first word, so that five classes stay distinguishable in 90 px."""
    return human.split(" ")[0].split("/")[0]


def probability_bars(
    probabilities: Mapping[str, float], classes: Sequence[str], human: HumanLabel
) -> list[dict[str, Any]]:
    """One bar per class in model order; the most probable is marked ``top``."""
    ordered = [c for c in classes if c in probabilities] or list(probabilities)
    if not ordered:
        return []
    best = max(ordered, key=lambda c: probabilities[c])
    return [{"cls": c, "human": human(c), "p": float(probabilities[c]), "top": c == best} for c in ordered]


def order_by_support(images: Sequence[ImageOut], verdict: VerdictOut | None) -> list[ImageOut]:
    """The verdict's most supportive images first; images it did not rank keep upload order after them.

    Without a verdict (not analysed, or withheld in second-read mode) the order
    is the upload order, so that the ordering itself cannot hint at the AI's answer.
    """
    by_position = sorted(images, key=lambda image: (image.position, image.id))
    if verdict is None:
        return by_position
    rank = {image_id: i for i, image_id in enumerate(verdict.support)}
    return sorted(by_position, key=lambda image: rank.get(image.id, len(rank)))


def exclusion_text(image: ImageOut) -> str | None:
    """Why the model left this image out of the verdict, in words; None when it took part.

    The gate's own words when stored (app.inference.analysis.exclusion_key); otherwise the same
    precedence as the verdict's counts: failed, then quality, then out of distribution.
    """
    if image.error:
        return "could not be analysed"
    if image.exclusion == "quality" and image.exclusion_reason:
        return f"blank or too dark: {image.exclusion_reason}"
    if image.exclusion and image.exclusion_reason:
        return image.exclusion_reason
    if image.quality_issue:
        return f"poor quality: {image.quality_issue}"
    if image.ood:
        return "unlike the images the model was trained on (out of distribution)"
    return None


def image_flags(image: ImageOut, lossy_policy: str = "warn") -> list[str]:
    flags = []
    if image.error:
        flags.append("could not be analysed")
    if image.exclusion == "not_ultrasound":
        flags.append("not an ultrasound image")
    if image.ood:
        flags.append("out of distribution")
    if image.quality_issue:
        flags.append(f"quality: {image.quality_issue}")
    if image.lossy_compression and lossy_policy != "accept":
        flags.append(image.lossy_compression)
    return flags


def image_item(
    image: ImageOut, classes: Sequence[str], human: HumanLabel, lossy_policy: str = "warn"
) -> dict[str, Any]:
    """What the viewer and thumbnail strip need for one image (serialised into the page as JSON)."""
    label_human = human(image.label) if image.label else None
    flags = image_flags(image, lossy_policy)
    return {
        "id": image.id,
        "filename": image.filename,
        "frame": image.frame,
        "width": image.width,
        "height": image.height,
        "original_url": image.image_url,
        "thumb_url": image.thumbnail_url,
        "heatmap_url": image.heatmap_url,
        "label": image.label,
        "human": label_human,
        "short": short_label(label_human) if label_human else None,
        "probs": probability_bars(image.probabilities or {}, classes, human),
        "ood": bool(image.ood),
        "ood_score": image.ood_score,
        "quality_issue": image.quality_issue,
        "used": image.used_in_verdict,
        "error": image.error,
        "flagged": bool(flags),
        "flag_text": "; ".join(flags),
        "excluded": exclusion_text(image) is not None,
        "excluded_reason": exclusion_text(image),
        "lossy": image.lossy_compression,
        "loop": image.loop,
        "plane": image.plane,
        "calibrated": image.calibration is not None,
        "calibration": image.calibration.model_dump() if image.calibration else None,
        "analysed": image.label is not None,
    }


def p_anomaly(image: ImageOut, normal_class: str) -> float | None:
    """1 − P(normal) of one analysed image; None when it has no probabilities (not analysed or withheld)."""
    if not image.probabilities or normal_class not in image.probabilities:
        return None
    return 1.0 - float(image.probabilities[normal_class])


def frames_text(n_frames: int | None, stored: int | None, limit: int | None) -> str:
    """ "12 frames" or "frames 1–120 of 300 stored (the server keeps at most 120 per loop)"."""
    total = n_frames or stored or 0
    kept = stored or total
    if kept >= total:
        return f"{total} frames"
    cap = f" (the server keeps at most {limit} frames per loop)" if limit else ""
    return f"frames 1–{kept} of {total} stored{cap}"


def image_groups(
    images: Sequence[ImageOut],
    items: Sequence[dict[str, Any]],
    normal_class: str,
    max_cine_frames: int | None = None,
) -> list[dict[str, Any]]:
    """Thumbnail entries: each still alone, each cine loop once with its frames in frame order.

    ``images`` and ``items`` are parallel (ImageOut and its ``image_item``), in the order the
    strip shows them (most supportive first); a loop takes the place of its first frame there.
    """
    groups: list[dict[str, Any]] = []
    loops: dict[str, dict[str, Any]] = {}
    for image, item in zip(images, items, strict=True):
        entry = {**item, "p_anomaly": p_anomaly(image, normal_class)}
        if image.loop is None:
            groups.append(
                {"kind": "still", "key": f"image-{image.id}", "frames": [entry], **_group_facts(image)}
            )
            continue
        group = loops.get(image.loop)
        if group is None:
            group = {"kind": "loop", "key": f"loop-{image.loop}", "frames": [], **_group_facts(image)}
            group["frames_text"] = frames_text(image.n_frames, image.frames_stored, max_cine_frames)
            loops[image.loop] = group
            groups.append(group)
        group["frames"].append(entry)
    for group in groups:
        frames = group["frames"]
        frames.sort(key=lambda f: f["frame"] if f["frame"] is not None else -1)
        analysed = [f for f in frames if f["analysed"]]
        group["n_analysed"] = len(analysed)
        # A loop is greyed only when every analysed frame was left out of the verdict.
        group["excluded"] = bool(analysed) and all(f["excluded"] for f in analysed)
        group["excluded_reason"] = analysed[0]["excluded_reason"] if group["excluded"] else None
        scored = [f for f in frames if f["p_anomaly"] is not None]
        group["most_suspicious"] = frames.index(max(scored, key=lambda f: f["p_anomaly"])) if scored else None
        lead = frames[group["most_suspicious"]] if group["most_suspicious"] is not None else frames[0]
        group["human"], group["short"] = lead["human"], lead["short"]
        group["flagged"] = any(f["flagged"] for f in frames)
        group["flag_text"] = "; ".join(dict.fromkeys(f["flag_text"] for f in frames if f["flag_text"]))
        group["thumb_url"] = frames[0]["thumb_url"]
        group["filename"] = frames[0]["filename"]
    return groups


def _group_facts(image: ImageOut) -> dict[str, Any]:
    return {
        "plane": image.plane,
        "frame_time_ms": image.frame_time_ms or 40.0,
        "frames_text": None,
        "position": image.position,
        # Acquisition order: series, then instance number (DICOM), then upload position.
        "acquisition": ".".join(
            f"{n:06d}" for n in (image.series_number or 0, image.instance_number or 0, image.position)
        ),
    }


def counts_text(verdict: VerdictOut) -> str:
    """ "Used 2 of 16 images; 14 left out: 9 unlike the training images (…), 4 blank or poor quality"."""
    used = f"Used {verdict.n_used} of {verdict.n_total} image{'' if verdict.n_total == 1 else 's'}"
    if not verdict.n_excluded:
        return used
    by_reason = verdict.excluded_by_reason
    order = [*EXCLUSION_TEXT, *sorted(set(by_reason) - set(EXCLUSION_TEXT))]
    parts = [f"{by_reason[key]} {EXCLUSION_TEXT.get(key, key)}" for key in order if by_reason.get(key)]
    # Verdicts stored before the split was kept (migration 0002) have the total only.
    return f"{used}; {verdict.n_excluded} left out" + (": " + ", ".join(parts) if parts else "")


def split_normal_text(verdict: VerdictOut, normal_class: str) -> str | None:
    """A caution when "normal" wins as one class although the anomalies together outweigh it.

    The verdict is the most likely single class (the paper's rule), so "Normal" can stand beside
    P(abnormal) 68 %: no anomaly alone beats normal, but together they do. A reader must not
    take such a verdict as reassurance.
    """
    if verdict.label != normal_class or verdict.p_abnormal is None or verdict.p_abnormal <= 0.5:
        return None
    p_normal = verdict.probabilities.get(normal_class, 1.0 - verdict.p_abnormal)
    return (
        f"Normal is only the most likely single class ({p_normal * 100:.0f} %); the anomaly classes "
        f"together reach {verdict.p_abnormal * 100:.0f} %. Read the images with care."
    )


def verdict_item(
    verdict: VerdictOut, classes: Sequence[str], normal_class: str, human: HumanLabel
) -> dict[str, Any]:
    indeterminate = verdict.label == INDETERMINATE
    return {
        "label": verdict.label,
        "human": INDETERMINATE_TEXT if indeterminate else human(verdict.label),
        "indeterminate": indeterminate,
        "reason": verdict.reason,
        "abnormal": not indeterminate and verdict.label != normal_class,
        "p_abnormal": verdict.p_abnormal,
        "aggregation": verdict.aggregation,
        "n_used": verdict.n_used,
        "n_excluded": verdict.n_excluded,
        "n_total": verdict.n_total,
        "counts_text": counts_text(verdict),
        "split_text": None if indeterminate else split_normal_text(verdict, normal_class),
        "probs": probability_bars(verdict.probabilities, classes, human),
    }


def diagnosis_item(d: DiagnosisOut, human: HumanLabel) -> dict[str, Any]:
    agrees = {True: "Agreed with the AI", False: "Disagreed with the AI", None: None}[d.agrees_with_ai]
    return {
        "id": d.id,
        "kind": d.kind,
        "kind_text": KIND_TEXT.get(d.kind, d.kind),
        "label": d.label,
        "human": human(d.label),
        "agrees_text": agrees,
        "confidence": d.confidence,
        "notes": d.notes,
        "signed_by": d.signed_by,
        "signed_at": format_datetime(d.signed_at),
        "signed_at_iso": d.signed_at.isoformat(),
        "time_to_decision": format_duration(d.time_to_decision_s),
        "amendment_reason": d.amendment_reason,
    }


@dataclass(frozen=True)
class DiagnosisForm:
    """Which read the case page offers next, and how it is worded."""

    kind: str  # "preliminary", "final" or "amendment"
    title: str
    help: str
    submit_text: str
    ask_agreement: bool
    ai_label_human: str | None
    ai_label: str | None = None  # the verdict's class: agreement is derived from it


def next_diagnosis_form(detail: StudyOut, human: HumanLabel) -> DiagnosisForm:
    """Second-read mode hides the AI until this user's first read, which is therefore preliminary.

    Once a final diagnosis exists, any change is an amendment with a reason.
    """
    has_final = any(d.kind in ("final", "amendment") for d in detail.diagnoses)
    verdict = detail.verdict
    if verdict is not None and verdict.label == INDETERMINATE:
        verdict = None  # nothing to agree or disagree with
    ai_label = human(verdict.label) if verdict else None
    if has_final:
        return DiagnosisForm(
            kind="amendment",
            title="Amend the diagnosis",
            help="The case is signed off. A change is recorded as an amendment; "
            "the earlier diagnosis stays in the history.",
            submit_text="Record amendment",
            ask_agreement=verdict is not None,
            ai_label_human=ai_label,
            ai_label=verdict.label if verdict else None,
        )
    if detail.ai_withheld:
        return DiagnosisForm(
            kind="preliminary",
            title="Preliminary read",
            help="Second-read mode: record your own reading first. The AI result is shown after that, "
            "and you then sign off the final diagnosis. Both reads are kept.",
            submit_text="Record preliminary read and show the AI",
            ask_agreement=False,
            ai_label_human=None,
        )
    return DiagnosisForm(
        kind="final",
        title="Diagnosis",
        help="Sign off the final diagnosis for this patient. "
        "A later change needs a reason and is kept as an amendment.",
        submit_text="Sign off",
        ask_agreement=verdict is not None,
        ai_label_human=ai_label,
        ai_label=verdict.label if verdict else None,
    )


def case_page(
    detail: StudyOut,
    classes: Sequence[str],
    normal_class: str,
    human: HumanLabel,
    status_api_url: str,
    lossy_policy: str = "warn",
    max_cine_frames: int | None = None,
) -> dict[str, Any]:
    verdict = detail.verdict
    ordered = order_by_support(detail.images, verdict)
    items = [image_item(i, classes, human, lossy_policy) for i in ordered]
    return {
        "id": detail.id,
        "patient_name": person_name(detail.patient.name),
        "patient_id": detail.patient.patient_id,
        "study_date": format_date(detail.study_date),
        "gestational_age_weeks": detail.gestational_age_weeks,
        "n_images": detail.n_images,
        "status": detail.status,
        "status_text": STATUS_TEXT.get(detail.status, detail.status),
        "analysis_error": detail.error,
        "status_api_url": status_api_url,
        "verdict": verdict_item(verdict, classes, normal_class, human) if verdict else None,
        "images": items,
        "groups": image_groups(ordered, items, normal_class, max_cine_frames),
        "report_url": f"/api/v1/studies/{detail.id}/report.pdf" if detail.status == "done" else None,
        "pacs_push": push_item(detail),
    }


def push_item(detail: StudyOut) -> dict[str, Any] | None:
    """The line the case page shows about sending the results to the PACS."""
    push = detail.pacs_push
    if push is None:
        return None
    if push.status == "sent":
        text = f"sent to {push.destination} ({push.n_instances} objects) at {format_datetime(push.sent_at)}"
    elif push.status == "pending":
        text = f"waiting to be sent to {push.destination}"
        if push.attempts:
            retry = format_datetime(push.next_attempt_at)
            text += f"; attempt {push.attempts} failed ({push.last_error}), next at {retry}"
    else:
        text = f"not sent to {push.destination} after {push.attempts} attempts: {push.last_error}"
    return {"status": push.status, "text": text}


def case_status_item(detail: StudyOut) -> dict[str, Any]:
    """The few fields the upload page shows for a new case and every page polls for."""
    return {
        "id": detail.id,
        "status": detail.status,
        "status_text": STATUS_TEXT.get(detail.status, detail.status),
        "patient_name": detail.patient.name,
        "patient_id": detail.patient.patient_id,
        "study_date": format_date(detail.study_date),
        "gestational_age_weeks": detail.gestational_age_weeks,
        "n_images": detail.n_images,
    }


def model_summary(card: Any, analysed_sha256: str | None) -> dict[str, Any] | None:
    """The model card facts a radiologist should see next to the AI's answer."""
    if card is None:
        return None
    raw = card.raw
    return {
        "name": card.name,
        "version": card.version,
        "sha256": card.sha256,
        "architecture": raw.get("architecture", "—"),
        "training_data": training_data_text(raw.get("provenance") or {}),
        "heatmap": heatmap_text(card.cam_target),
        "intended_use": raw.get("intended_use", "—"),
        "clinical_use": card.clinical_use,
        "clinical_use_reason": raw.get("clinical_use_reason", ""),
        "metrics": metric_lines(raw.get("metrics") or {}),
        "analysed_with": analysed_sha256[:12] if analysed_sha256 else None,
    }


def heatmap_text(cam_target: str) -> str:
    """What the heatmap over each image shows, in a reader's words (the card's CAM target)."""
    if cam_target == "normal-contrast":
        return (
            "Where the image looks most like the suggested anomaly rather than normal "
            "(for a normal suggestion: most normal rather than abnormal). Grad-CAM, last residual stage."
        )
    return "Where the image most raised the score of the suggested class. Grad-CAM, last residual stage."


def training_data_text(provenance: Mapping[str, Any]) -> str:
    """What the model learnt from, in one line: synthetic or not, and how much."""
    counts = ", ".join(
        f"{provenance[key]} {key}" for key in ("patients", "images") if isinstance(provenance.get(key), int)
    )
    if provenance.get("synthetic"):
        return "Synthetic phantoms" + (f" ({counts})" if counts else "") + " — no patient images"
    source = provenance.get("description") or provenance.get("data")
    text = str(source) if source else "not stated"
    return text + (f" ({counts})" if counts else "")


# The evaluation's headline numbers (app.evaluation card_metrics "summary"), in reading order.
HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("patient_accuracy_mean", "Patient accuracy"),
    ("patient_macro_auroc_all_classes", "Patient AUROC (macro)"),
    ("image_accuracy", "Image accuracy"),
    ("image_macro_auroc_all_classes", "Image AUROC (macro)"),
    ("pointing_game_true_class", "Heatmap pointing game"),
)


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metric_lines(metrics: Mapping[str, Any], limit: int = 6) -> list[tuple[str, str]]:
    """A few headline metrics with their 95 % intervals, and what they were measured on.

    Reads the evaluation's card layout ("summary", "confidence_intervals",
    "evaluated_on"); a card with flat numeric metrics shows those instead.
    """
    summary = metrics.get("summary")
    if not isinstance(summary, Mapping):
        flat = [(name.replace("_", " "), _number(value)) for name, value in metrics.items()]
        return [(name, text) for name, text in flat if text is not None][:limit]
    intervals = metrics.get("confidence_intervals") or {}
    lines: list[tuple[str, str]] = []
    for key, label in HEADLINE_METRICS:
        text = _number(summary.get(key))
        if text is None:
            continue
        # metric_interval reads both the {"low", "high", "method"} layout and older cards' [low, high].
        interval = metric_interval(intervals.get(key))
        if interval is not None:
            text += f" (95% CI {interval[0]:.3f}–{interval[1]:.3f})"
        lines.append((label, text))
    data = metrics.get("evaluated_on")
    if isinstance(data, Mapping) and data.get("patients") is not None:
        kind = "synthetic " if data.get("synthetic") else ""
        lines.append(("Evaluated on", f"{data['patients']} {kind}patients, {data.get('images', '?')} images"))
    return lines[:limit]
