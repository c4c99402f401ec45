"""The PDF report of a case (reportlab): images beside their heatmap overlays, the AI verdict
with its model, the signed diagnosis with amendments, and the model card's "not for clinical
use" line when it has one (at the top and in every page's footer)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from app.web.core.storage import ContentStore
from app.web.dicom.case_record import CaseRecord, ImageResult, display_image, heatmap_overlay
from app.web.schemas import ChecklistOut, MeasurementOut

# Images in the report: enough to show the case, few enough to keep the file small.
MAX_IMAGES = 24
CELL_MM = 60


def _png(rgb: np.ndarray, max_side: int = 512) -> io.BytesIO:
    picture = PILImage.fromarray(rgb)
    picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def report_images(results: list[ImageResult]) -> list[ImageResult]:
    """Stills, and of each cine loop only its most suspicious analysed frame (the highest
    P(anomaly)); the loop's other frames are on the case page's player."""
    best: dict[str, ImageResult] = {}
    order: list[str | int] = []
    for i, result in enumerate(results):
        image = result.image
        if image.frame is None:
            order.append(i)
            continue
        key = image.source_sha256
        if key not in best:
            order.append(key)
            best[key] = result
        elif _suspicion(result) > _suspicion(best[key]):
            best[key] = result
    return [results[k] if isinstance(k, int) else best[k] for k in order]


def _suspicion(result: ImageResult) -> float:
    prediction = result.prediction
    if prediction is None or not prediction.probabilities or prediction.error:
        return -1.0
    probabilities = prediction.probabilities
    normal = probabilities.get("normal")
    return 1.0 - normal if normal is not None else max(probabilities.values())


def _flowable(rgb: np.ndarray) -> Image:
    height, width = rgb.shape[:2]
    scale = CELL_MM * mm / max(height, width)
    return Image(_png(rgb), width=width * scale, height=height * scale)


@dataclass(frozen=True)
class ReaderSections:
    """The reader's part of the structured report: the ISUOG checklist and the measurements."""

    checklist: ChecklistOut
    measurements: list[MeasurementOut] = field(default_factory=list)


def _reader_story(sections: ReaderSections, styles: Any, p: Any) -> list[object]:
    from app.web.services.cns_checklist import ANSWER_WORDS

    small = styles["Italic"]
    story: list[object] = [Spacer(1, 4 * mm), Paragraph("ISUOG basic CNS examination", styles["Heading2"])]
    rows = [
        [p(item.label), p(ANSWER_WORDS.get(item.answer or "", "not recorded"))]
        for item in sections.checklist.items
    ]
    table = Table(rows, colWidths=[80 * mm, 60 * mm])
    table.setStyle(
        TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    )
    story.append(table)
    if sections.checklist.comment:
        story.append(p(f"Comment: {sections.checklist.comment}", small))
    if sections.checklist.recorded_by:
        story.append(p(f"Checklist recorded by {sections.checklist.recorded_by}", small))
    story += [Spacer(1, 4 * mm), Paragraph("Biometry", styles["Heading2"])]
    if not sections.measurements:
        story.append(p("No measurements were recorded."))
        return story
    header = ["Measurement", "Value", "Z-score", "Percentile", "Reference / note"]
    rows = [[p(h) for h in header]]
    for m in sections.measurements:
        value = f"{m.value_mm:.1f} mm" + (
            f" (axes {m.axes_mm[0]:.1f} × {m.axes_mm[1]:.1f} mm)" if m.axes_mm else ""
        )
        note = "; ".join(x for x in (m.reference or "", m.note) if x)
        if m.within_limits is not None:
            note += ("; " if note else "") + ("within limits" if m.within_limits else "OUTSIDE limits")
        rows.append(
            [
                p(f"{m.title} ({m.name})"),
                p(value),
                p("-" if m.z_score is None else f"{m.z_score:+.2f}"),
                p("-" if m.percentile is None else f"{m.percentile:.1f}"),
                p(note, small),
            ]
        )
    table = Table(rows, colWidths=[38 * mm, 36 * mm, 18 * mm, 20 * mm, 68 * mm])
    table.setStyle(
        TableStyle([("GRID", (0, 0), (-1, -1), 0.25, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    )
    story.append(table)
    return story


def build_pdf(
    record: CaseRecord, store: ContentStore, banner: str | None, reader: ReaderSections | None = None
) -> bytes:
    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["Italic"]
    warning = styles["Heading3"].clone("warning", textColor=colors.darkred)

    def p(text: str, style: object = body) -> Paragraph:
        return Paragraph(escape(text), style)

    study, analysis, verdict = record.study, record.analysis, record.verdict
    ga = study.gestational_age_weeks
    story: list[object] = [Paragraph("Fetal CNS ultrasound: AI analysis report", styles["Title"])]
    if banner:
        story.append(p(banner.upper() if banner.startswith("not for clinical use") else banner, warning))
    story += [
        p(f"Patient: {study.patient.name or '-'} (ID {study.patient.patient_id or '-'})"),
        p(
            f"Study date: {study.study_date.isoformat() if study.study_date else '-'}; "
            f"gestational age: {'-' if ga is None else ga} weeks"
        ),
        p(f"Study Instance UID: {study.study_uid}", small),
        Spacer(1, 4 * mm),
        Paragraph("AI verdict", styles["Heading2"]),
        p(
            f"{verdict.label}"
            + (f" (P(anomaly) = {verdict.p_abnormal:.3f})" if verdict.p_abnormal is not None else "")
        ),
        p(f"Images used: {verdict.n_used} of {verdict.n_total}; left out: {verdict.n_excluded}"),
    ]
    if verdict.reason:
        story.append(p(f"Reason: {verdict.reason}"))
    story.append(
        p(f"Model: {analysis.model_name} {analysis.model_version} (sha256 {analysis.model_sha256})", small)
    )
    if reader is not None:
        story += _reader_story(reader, styles, p)
    story += [Spacer(1, 4 * mm), Paragraph("Radiologist's diagnosis", styles["Heading2"])]
    if not record.reads:
        story.append(p("Not yet signed."))
    for read in record.reads:
        signed_at = read.signed_at.isoformat(timespec="minutes")
        line = f"{read.kind}: {read.label}, signed by {read.signed_by} at {signed_at}"
        if read.amendment_reason:
            line += f"; reason: {read.amendment_reason}"
        story.append(p(line))
        if read.notes:
            story.append(p(f"Notes: {read.notes}", small))
    story += [Spacer(1, 4 * mm), Paragraph("Images and heatmaps", styles["Heading2"])]
    rows = []
    shown = report_images(record.images)
    for result in shown[:MAX_IMAGES]:
        prediction = result.prediction
        words = result.image.filename + (f" frame {result.frame_number}" if result.frame_number else "")
        if prediction is not None and prediction.label:
            words += f": {prediction.label} ({(prediction.probabilities or {}).get(prediction.label, 0):.2f})"
        if result.exclusion:
            words += f"; left out: {result.exclusion}"
        overlay = heatmap_overlay(store, result)
        original = display_image(store, result.image)
        rows.append([_flowable(original), _flowable(overlay) if overlay is not None else p("no heatmap")])
        rows.append([p(words, small), ""])
    if rows:
        table = Table(rows, colWidths=[(CELL_MM + 4) * mm] * 2)
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("SPAN", (0, 1), (1, 1))]))
        story.append(table)
    if len(shown) > MAX_IMAGES:
        story.append(p(f"{len(shown) - MAX_IMAGES} more images are on the case page.", small))
    created = datetime.now(UTC).isoformat(timespec="seconds")

    def footer(canvas: object, document: object) -> None:
        canvas.saveState()  # type: ignore[attr-defined]
        canvas.setFont("Helvetica", 7)  # type: ignore[attr-defined]
        text = f"fetalcns report, made {created}. AI output supports, never replaces, the radiologist's read."
        if banner:
            text = banner + " | " + text
        canvas.drawString(15 * mm, 8 * mm, text[:180])  # type: ignore[attr-defined]
        canvas.restoreState()  # type: ignore[attr-defined]

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title="fetalcns AI analysis report",
        author="fetalcns",
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
    )
    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
