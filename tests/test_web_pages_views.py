"""The case page's view models: ordering, withholding in second-read mode, and which form is offered."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app.web.core.templating import human_label
from app.web.pages.views import (
    case_page,
    format_duration,
    heatmap_text,
    metric_lines,
    next_diagnosis_form,
    order_by_support,
    person_name,
    probability_bars,
    training_data_text,
)
from app.web.schemas import DiagnosisOut, ImageOut, PatientOut, StudyOut, StudySummaryOut, VerdictOut

CLASSES = ("Anencephaly", "Encephalocele_meningocele", "Holoprosencephaly", "normal", "Rachischisis")
NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def _image(image_id: int, position: int, label: str | None = None) -> ImageOut:
    return ImageOut(
        id=image_id,
        position=position,
        filename=f"img{image_id}.dcm",
        frame=None,
        width=640,
        height=480,
        image_url=f"/api/v1/images/{image_id}/original",
        thumbnail_url=f"/api/v1/images/{image_id}/thumbnail",
        label=label,
        probabilities={c: (0.6 if c == label else 0.1) for c in CLASSES} if label else None,
        ood=None,
        ood_score=None,
        quality_issue=None,
        used_in_verdict=None,
        heatmap_url=f"/api/v1/images/{image_id}/heatmap" if label else None,
        error=None,
    )


def _verdict(label: str, support: list[int]) -> VerdictOut:
    probabilities = {c: (0.6 if c == label else 0.1) for c in CLASSES}
    return VerdictOut(
        label=label,
        probabilities=probabilities,
        p_abnormal=1 - probabilities["normal"],
        aggregation="mean",
        reason=None,
        n_used=len(support),
        n_excluded=0,
        n_total=len(support),
        excluded_by_reason={},
        support=support,
    )


def _summary(verdict: VerdictOut | None, withheld: bool = False, reviewed: bool = False) -> StudySummaryOut:
    return StudySummaryOut(
        id=7,
        status="done" if verdict or withheld else "queued",
        error=None,
        created_at=NOW,
        study_date=date(2026, 3, 13),
        gestational_age_weeks=21.4,
        patient=PatientOut(id=1, patient_id="P-001", name="DOE^JANE"),
        n_images=3,
        verdict=verdict,
        ai_withheld=withheld,
        reviewed=reviewed,
        final_label="Anencephaly" if reviewed else None,
    )


def _diagnosis(kind: str) -> DiagnosisOut:
    return DiagnosisOut(
        id=1,
        kind=kind,
        label="Anencephaly",
        agrees_with_ai=True,
        confidence=4,
        notes="",
        signed_by="rad",
        signed_at=NOW,
        time_to_decision_s=42.0,
        amends_id=None,
        amendment_reason=None,
    )


def _detail(summary: StudySummaryOut, images: list[ImageOut], diagnoses: list[DiagnosisOut]) -> StudyOut:
    return StudyOut(
        **summary.model_dump(), study_uid="1.2.3", analysis=None, images=images, diagnoses=diagnoses
    )


def test_images_follow_the_verdicts_support_order_and_unranked_ones_keep_upload_order() -> None:
    images = [_image(10, 0), _image(11, 1), _image(12, 2), _image(13, 3)]
    ordered = order_by_support(images, _verdict("Anencephaly", support=[12, 10]))
    assert [i.id for i in ordered] == [12, 10, 11, 13]


def test_without_a_verdict_images_keep_upload_order_so_order_cannot_hint_at_the_ai() -> None:
    images = [_image(11, 1), _image(10, 0), _image(12, 2)]
    assert [i.id for i in order_by_support(images, None)] == [10, 11, 12]


def test_probability_bars_keep_model_order_and_mark_the_most_probable_class() -> None:
    bars = probability_bars(
        {c: p for c, p in zip(CLASSES, [0.1, 0.05, 0.6, 0.2, 0.05], strict=True)}, CLASSES, human_label
    )
    assert [b["cls"] for b in bars] == list(CLASSES)
    assert [b["cls"] for b in bars if b["top"]] == ["Holoprosencephaly"]
    assert bars[1]["human"] == "Encephalocele / meningocele"


def test_second_read_before_a_read_offers_a_preliminary_form_and_the_page_carries_no_ai_output() -> None:
    # What the service returns when it withholds: no verdict, images without AI fields.
    detail = _detail(_summary(None, withheld=True), [_image(10, 0), _image(11, 1)], [])
    form = next_diagnosis_form(detail, human_label)
    assert form.kind == "preliminary"
    assert not form.ask_agreement
    page = case_page(detail, CLASSES, "normal", human_label, "/api/v1/studies/7")
    assert page["verdict"] is None
    assert all(i["heatmap_url"] is None and i["probs"] == [] and i["label"] is None for i in page["images"])


def test_concurrent_mode_offers_sign_off_with_the_agreement_question() -> None:
    detail = _detail(_summary(_verdict("Anencephaly", [10])), [_image(10, 0, "Anencephaly")], [])
    form = next_diagnosis_form(detail, human_label)
    assert (form.kind, form.ask_agreement, form.ai_label_human) == ("final", True, "Anencephaly")


def test_after_a_preliminary_read_the_final_sign_off_is_offered() -> None:
    detail = _detail(
        _summary(_verdict("Anencephaly", [10])), [_image(10, 0, "Anencephaly")], [_diagnosis("preliminary")]
    )
    assert next_diagnosis_form(detail, human_label).kind == "final"


@pytest.mark.parametrize("kind", ["final", "amendment"])
def test_a_signed_case_only_offers_an_amendment(kind: str) -> None:
    detail = _detail(
        _summary(_verdict("normal", [10]), reviewed=True), [_image(10, 0, "normal")], [_diagnosis(kind)]
    )
    assert next_diagnosis_form(detail, human_label).kind == "amendment"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, None), (4.4, "4 s"), (59.6, "60 s"), (61, "1 min 01 s"), (3725, "1 h 02 min")],
)
def test_format_duration(seconds: float | None, text: str | None) -> None:
    assert format_duration(seconds) == text


def test_metric_lines_keep_flat_numbers_only() -> None:
    lines = metric_lines({"balanced_accuracy": 0.91234, "per_class": {"a": 1}, "n_patients": 40, "ok": True})
    assert lines == [("balanced accuracy", "0.912"), ("n patients", "40")]


def test_metric_lines_read_intervals_that_name_their_method() -> None:
    metrics = {
        "summary": {"patient_accuracy_mean": 1.0, "image_accuracy": 0.98},
        "confidence_intervals": {
            "patient_accuracy_mean": {"low": 0.9697, "high": 1.0, "method": "clopper-pearson"},
            "image_accuracy": {"low": None, "high": None, "method": "bca-patient-bootstrap"},
        },
    }
    assert metric_lines(metrics) == [
        ("Patient accuracy", "1.000 (95% CI 0.970–1.000)"),
        ("Image accuracy", "0.980"),
    ]


def test_metric_lines_read_the_evaluations_summary_with_intervals() -> None:
    metrics = {
        "summary": {"patient_accuracy_mean": 0.875, "image_accuracy": 0.8, "image_ece": 0.05},
        "confidence_intervals": {"patient_accuracy_mean": [0.75, 0.95], "image_accuracy": None},
        "evaluated_on": {"patients": 40, "images": 180, "synthetic": True},
    }
    assert metric_lines(metrics) == [
        ("Patient accuracy", "0.875 (95% CI 0.750–0.950)"),
        ("Image accuracy", "0.800"),
        ("Evaluated on", "40 synthetic patients, 180 images"),
    ]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("DOE^JANE", "DOE, JANE"),
        ("Doe^Jane^Ann^Dr", "Doe, Jane Ann"),
        ("Doe", "Doe"),
        ("Doe^^^", "Doe"),
        ("Jane Doe", "Jane Doe"),
        (None, None),
        ("Yamada^Tarou=山田^太郎", "Yamada, Tarou"),
    ],
)
def test_person_name_reads_dicom_names_naturally(raw: str | None, shown: str | None) -> None:
    assert person_name(raw) == shown


def test_an_indeterminate_verdict_is_shown_as_no_verdict_and_asks_no_agreement() -> None:
    verdict = VerdictOut(
        label="indeterminate",
        probabilities={},
        p_abnormal=None,
        aggregation="mean",
        reason="every image was out of distribution",
        n_used=0,
        n_excluded=2,
        n_total=2,
        excluded_by_reason={"ood": 2},
        support=[],
    )
    detail = _detail(_summary(verdict), [_image(10, 0), _image(11, 1)], [])
    page = case_page(detail, CLASSES, "normal", human_label, "/cases/7/status")
    assert page["verdict"]["indeterminate"] is True
    assert page["verdict"]["abnormal"] is False
    assert page["verdict"]["probs"] == []
    assert next_diagnosis_form(detail, human_label).ask_agreement is False


def test_the_case_page_says_which_images_were_left_out_and_why() -> None:
    verdict = VerdictOut(
        label="indeterminate",
        probabilities={},
        p_abnormal=None,
        aggregation="mean",
        reason="3 of 4 images were left out (...)",
        n_used=1,
        n_excluded=3,
        n_total=4,
        excluded_by_reason={"failed": 1, "ood": 2},
        support=[],
    )
    good = _image(10, 0, "normal")
    ood = _image(11, 1, "Anencephaly").model_copy(update={"ood": True, "used_in_verdict": False})
    blank = _image(12, 2, "normal").model_copy(update={"quality_issue": "blank or near-uniform frame"})
    failed = _image(13, 3).model_copy(update={"error": "this image could not be analysed: truncated"})
    detail = _detail(_summary(verdict), [good, ood, blank, failed], [])
    page = case_page(detail, CLASSES, "normal", human_label, "/cases/7/status")
    assert page["verdict"]["human"] == "No verdict — indeterminate"
    # Reasons in a fixed order (out of distribution before failed), whatever order they were counted in.
    assert page["verdict"]["counts_text"] == (
        "Used 1 of 4 images; 3 left out: 2 unlike the training images (out of distribution), "
        "1 could not be analysed"
    )
    reasons = {item["id"]: item["excluded_reason"] for item in page["images"]}
    assert reasons == {
        10: None,
        11: "unlike the images the model was trained on (out of distribution)",
        12: "poor quality: blank or near-uniform frame",
        13: "could not be analysed",
    }
    assert [item["excluded"] for item in page["images"]] == [False, True, True, True]


def test_counts_of_a_verdict_stored_before_the_split_was_kept() -> None:
    verdict = _verdict("normal", [10, 11]).model_copy(update={"n_excluded": 1, "n_total": 3})
    page = case_page(_detail(_summary(verdict), [], []), CLASSES, "normal", human_label, "/s")
    assert page["verdict"]["counts_text"] == "Used 2 of 3 images; 1 left out"
    assert page["verdict"]["human"] == "Normal" and not page["verdict"]["indeterminate"]


def test_training_data_says_synthetic_and_how_much() -> None:
    synthetic = {"data": "/data/synth", "patients": 40, "images": 180, "synthetic": True}
    assert training_data_text(synthetic) == "Synthetic phantoms (40 patients, 180 images) — no patient images"
    assert training_data_text({"data": None, "synthetic": False}) == "not stated"
    assert (
        training_data_text({"description": "Hospital X 2019-2023", "patients": 5})
        == "Hospital X 2019-2023 (5 patients)"
    )


def test_heatmap_text_follows_the_cards_cam_target() -> None:
    contrast = heatmap_text("normal-contrast")
    assert contrast.startswith("Where the image looks most like the suggested anomaly rather than normal")
    assert heatmap_text("logit").startswith("Where the image most raised the score")


def test_counts_text_names_out_of_scope_views() -> None:
    from app.inference.aggregate import EXCLUSION_WORDS, VIEW
    from app.web.pages.views import counts_text

    verdict = VerdictOut(
        label="indeterminate",
        probabilities={},
        p_abnormal=None,
        aggregation="mean",
        reason="all 3 image(s) were left out",
        n_used=0,
        n_excluded=3,
        n_total=3,
        excluded_by_reason={"view": 2, "ood": 1},
        support=[],
    )
    assert counts_text(verdict) == (
        "Used 0 of 3 images; 3 left out: 1 unlike the training images (out of distribution), "
        "2 an ultrasound view this model was not trained on"
    )
    assert EXCLUSION_WORDS[VIEW] == "an ultrasound view this model was not trained on"


def _normal_verdict(p_normal: float) -> VerdictOut:
    rest = (1.0 - p_normal) / 4
    probabilities = {c: (p_normal if c == "normal" else rest) for c in CLASSES}
    return _verdict("normal", [10]).model_copy(
        update={"probabilities": probabilities, "p_abnormal": 1.0 - p_normal}
    )


def test_a_normal_verdict_that_the_anomalies_together_outweigh_carries_a_caution() -> None:
    detail = _detail(_summary(_normal_verdict(0.32)), [_image(10, 0, "normal")], [])
    page = case_page(detail, CLASSES, "normal", human_label, "/cases/7/status")
    assert page["verdict"]["abnormal"] is False
    assert page["verdict"]["split_text"] == (
        "Normal is only the most likely single class (32 %); the anomaly classes together reach 68 %. "
        "Read the images with care."
    )


@pytest.mark.parametrize("p_normal", [0.5, 0.6, 0.95])
def test_a_normal_verdict_that_outweighs_the_anomalies_carries_no_caution(p_normal: float) -> None:
    detail = _detail(_summary(_normal_verdict(p_normal)), [_image(10, 0, "normal")], [])
    page = case_page(detail, CLASSES, "normal", human_label, "/cases/7/status")
    assert page["verdict"]["split_text"] is None


def test_an_anomaly_verdict_carries_no_split_caution() -> None:
    detail = _detail(_summary(_verdict("Anencephaly", [10])), [_image(10, 0, "Anencephaly")], [])
    page = case_page(detail, CLASSES, "normal", human_label, "/cases/7/status")
    assert page["verdict"]["abnormal"] is True and page["verdict"]["split_text"] is None
