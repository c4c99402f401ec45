"""The PDF report of a case (reportlab): images beside their heatmap overlays, the AI verdict
with its model, the signed diagnosis with amendments, and the model card's "not for clinical
use" line when it has one (at the top and in every page's footer)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from app.web.core.storage import ContentStore
from app.web.dicom.case_record import CaseRecord, display_image, heatmap_overlay

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


def _flowable(rgb: np.ndarray) -> Image:
    height, width = rgb.shape[:2]
    scale = CELL_MM * mm / max(height, width)
    return Image(_png(rgb), width=width * scale, height=height * scale)


def build_pdf(record: CaseRecord, store: ContentStore, banner: str | None) -> bytes:
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
    for result in record.images[:MAX_IMAGES]:
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
    if len(record.images) > MAX_IMAGES:
        story.append(p(f"{len(record.images) - MAX_IMAGES} more images are on the case page.", small))
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
