"""metrics.json → report.html with PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: headless servers have no display

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from app.evaluation.runner import Evaluation
from app.inference.render import overlay
from app.labels import HUMAN_NAMES
from app.modelcard import metric_interval

_CAM_TARGET_WORDS = {
    "logit": "each class logit (textbook Grad-CAM)",
    "normal-contrast": "each anomaly's log-odds against normal (Grad-CAM of y_c - y_normal)",
}


def _human(name: str) -> str:
    return HUMAN_NAMES.get(name, name)


def plot_confusion(ax: Any, matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> None:
    values = np.asarray(matrix)
    ax.imshow(values, cmap="Blues")
    ticks = range(len(classes))
    ax.set_xticks(ticks, [_human(c) for c in classes], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(ticks, [_human(c) for c in classes], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    peak = values.max() if values.size else 0
    for (row, col), count in np.ndenumerate(values):
        colour = "white" if count > peak / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)


def figure_confusion(metrics: dict[str, Any], path: Path) -> None:
    classes = metrics["classes"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    plot_confusion(axes[0], metrics["image"]["confusion_matrix"], classes, "images")
    patient_mean, patient_vote = metrics["patient_mean"], metrics["patient_vote"]
    plot_confusion(axes[1], patient_mean["confusion_matrix"], classes, "patients (mean probability)")
    plot_confusion(axes[2], patient_vote["confusion_matrix"], classes, "patients (majority vote)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure_roc(evaluation: Evaluation, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    for index, name in enumerate(evaluation.classes):
        positives = evaluation.image_true == index
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, evaluation.image_probabilities[:, index])
        ax.plot(fpr, tpr, label=_human(name))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("One-vs-rest ROC, image level")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure_reliability(metrics: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, title in ((axes[0], "image", "images"), (axes[1], "patient_mean", "patients (mean)")):
        bins = metrics[key]["reliability"]
        centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
        accuracies = [b["accuracy"] if b["count"] else 0.0 for b in bins]
        ax.bar(centres, accuracies, width=1.0 / len(bins), edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
        ax.set_xlabel("confidence (top-class probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"Reliability, {title}: ECE {metrics[key]['ece']:.3f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure_examples(evaluation: Evaluation, path: Path) -> bool:
    if not evaluation.examples:
        return False
    fig, axes = plt.subplots(1, len(evaluation.examples), figsize=(4 * len(evaluation.examples), 4))
    for ax, (name, image, cam) in zip(np.atleast_1d(axes), evaluation.examples, strict=True):
        ax.imshow(overlay(image, cam))
        ax.set_title(f"{_human(name)}: Grad-CAM of the true class", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _ci(metrics: dict[str, Any], key: str) -> str:
    found = metric_interval(metrics["confidence_intervals"].get(key))
    return f"{found[0]:.3f}–{found[1]:.3f}" if found else "–"


def _ci_text(value: object) -> str:
    found = metric_interval(value)
    return f"{found[0]:.3f}–{found[1]:.3f}" if found else "–"


def _ci_method(metrics: dict[str, Any], key: str) -> str:
    # Reports written before intervals carried their method used the percentile bootstrap.
    found = metric_interval(metrics["confidence_intervals"].get(key))
    if not found:
        return "–"
    return found[2] or "percentile-patient-bootstrap"


def _methods_section(metrics: dict[str, Any]) -> str:
    methods = metrics.get("interval_methods") or {}
    items = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in methods.items())
    return f"<ul>{items}</ul>" if items else ""


def _calibration_section(block: dict[str, Any] | None) -> str:
    if not block:
        return ""
    fitted = block.get("fitted_on") or {}
    where = ", ".join(f"{k} {fitted[k]}" for k in ("data", "patients", "images") if k in fitted)
    warning = (
        "<p class='warn'>Measured on the data the temperature was fitted on: the ECE after is optimistic.</p>"
        if block.get("same_data_as_fit")
        else ""
    )
    rows = [
        ("ECE, images (10 bins)", block["image_ece_before"], block["image_ece_after"]),
        ("NLL, images", block["image_nll_before"], block["image_nll_after"]),
    ]
    return f"""<h2>Calibration</h2>
<p>Temperature scaling: probabilities are softmax(logits / T) with T = {block["temperature"]:.4f}
from the model card (fitted on {html.escape(where or "unstated data")}). Before: plain softmax;
after: as served. Every other probability in this report is the calibrated one.</p>
{warning}
{_table(["metric", "before (T = 1)", "after"], rows)}"""


def _per_class_ci(per_class: dict[str, Any]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for name, m in per_class.items():
        found = m.get("intervals") or {}
        cells = []
        for key in ("sensitivity", "specificity", "ppv", "npv"):
            bounds = metric_interval(found.get(key))
            cells.append(f"{bounds[0]:.3f}–{bounds[1]:.3f}" if bounds else None)
        methods = {b[2] for b in (metric_interval(v) for v in found.values()) if b and b[2]}
        rows.append((_human(name), *cells, ", ".join(sorted(methods)) or None))
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


SUMMARY_ROWS = (
    ("Patient accuracy (the card's rule)", "patient_accuracy"),
    ("Patient accuracy (mean probability)", "patient_accuracy_mean"),
    ("Patient accuracy (majority vote)", "patient_accuracy_vote"),
    ("Patient accuracy (product of probabilities)", "patient_accuracy_geomean"),
    ("Image accuracy", "image_accuracy"),
    ("Image macro AUROC, 5 classes", "image_macro_auroc_all_classes"),
    ("Image macro AUROC, 4 anomaly classes", "image_macro_auroc_anomaly_classes"),
    ("Image micro AUROC, 5 classes", "image_micro_auroc_all_classes"),
    ("Image micro AUROC, 4 anomaly classes", "image_micro_auroc_anomaly_classes"),
    ("Patient macro AUROC, 5 classes", "patient_macro_auroc_all_classes"),
    ("Patient macro AUROC, 4 anomaly classes", "patient_macro_auroc_anomaly_classes"),
    ("Pointing game (true-class CAM)", "pointing_game_true_class"),
    ("Pointing game (predicted-class CAM)", "pointing_game_predicted_class"),
    ("CAM IoU at 0.5 × max (true class)", "cam_iou_true_class"),
    ("ECE, images", "image_ece"),
    ("ECE, patients", "patient_ece"),
    ("Images flagged out of distribution", "ood_flagged_fraction"),
)


def _robustness_section(block: dict[str, Any] | None) -> str:
    if not block:
        return ""
    rows = [
        (
            row["description"],
            row["image_accuracy"],
            row["patient_accuracy_mean"],
            row["patient_accuracy_vote"],
            row.get("patient_accuracy_geomean"),
            row["ood_flagged_fraction"],
            row["patient_accuracy_served"],
            row["patient_indeterminate_fraction"],
        )
        for row in block["rows"]
    ]
    header = [
        "change",
        "image accuracy",
        "patient accuracy (mean)",
        "patient accuracy (vote)",
        "patient accuracy (product)",
        "flagged OOD",
        "patient accuracy (served, gated)",
        "patients indeterminate",
    ]
    return f"""<h2>Robustness</h2>
<p>Each change is applied {html.escape(block["applied"])}; {block["patients"]} patients,
{block["images"]} images. Patient verdicts: {html.escape(block["aggregation"])}.</p>
{_table(header, rows)}"""


def _cam_comparison_section(comparison: dict[str, Any] | None) -> str:
    """Both heatmap kinds of one checkpoint (evaluate --compare-cam-model), per class and overall."""
    if not comparison:
        return ""
    targets = list(comparison["targets"])
    classes = list(next(iter(comparison["targets"].values()))["per_class"])
    rows = [
        (
            _human(name),
            *(comparison["targets"][t]["per_class"][name]["pointing_game_true_class"] for t in targets),
        )
        for name in classes
    ]
    rows.append(("all", *(comparison["targets"][t]["pointing_game_true_class"] for t in targets)))
    header = ["class", *(f"pointing game, {t}" for t in targets)]
    return f"""<h3>Pointing game by CAM target (same weights)</h3>
<p>{" and ".join(html.escape(_CAM_TARGET_WORDS.get(t, t)) for t in targets)}; per plane in metrics.json.</p>
{_table(header, rows)}"""


def _ood_section(check: dict[str, Any] | None) -> str:
    if not check:
        return ""
    inside = check["in_distribution"]
    methods = [*check["signals"], "combined"]
    rows = [
        (
            group["name"],
            group["images"],
            group["studies"],
            group["flag_rate"],
            *(group["auroc"][m] for m in methods),
            group["verdict_fraction"],
        )
        for group in [*check["groups"], check["pooled"]]
    ]
    rows.append(
        (
            "in distribution (--data): false flags",
            inside["images"],
            inside["patients"],
            inside["false_flag_rate"],
            *(None for _ in methods),
            inside["verdict_fraction"],
        )
    )
    header = [
        "group",
        "images",
        "studies",
        "flagged OOD",
        *(f"AUROC {m}" for m in methods),
        "studies with a verdict",
    ]
    return f"""<h2>Out-of-distribution check</h2>
<p>Each group is a folder of inputs the model is not meant for, ingested and analysed as an upload
is (studies as ingested; the card's OOD rule, blank-frame check and verdict rule). AUROC: the
in-distribution images of this evaluation as negatives, the group's images as positives. Combined
score: {html.escape(check["combined_score"])}. A group of OOD images only should have no study with a
verdict.</p>
{_table(header, rows)}"""


def render_html(metrics: dict[str, Any], figures: dict[str, str]) -> str:
    summary = metrics["summary"]
    data = metrics["data"]
    model = metrics["model"]
    rows = [
        (label, summary.get(key), _ci(metrics, key), _ci_method(metrics, key))
        for label, key in SUMMARY_ROWS
        if key in summary
    ]
    per_class = [
        (_human(name), m["support"], m["sensitivity"], m["specificity"], m["ppv"], m["npv"], m["f1"])
        for name, m in metrics["patient_mean"]["per_class"].items()
    ]
    per_class_images = [
        (_human(name), m["support"], m["sensitivity"], m["specificity"], m["ppv"], m["npv"], m["f1"])
        for name, m in metrics["image"]["per_class"].items()
    ]
    ga = [
        (group, g["patients"], g["images"], g.get("patient_accuracy"), g.get("image_accuracy"))
        for group, g in metrics["gestational_age"].items()
    ]
    site_rows = [
        (
            site,
            g["patients"],
            g["images"],
            g.get("patient_accuracy"),
            _ci_text(g.get("patient_accuracy_ci")),
            g.get("image_accuracy"),
        )
        for site, g in metrics.get("site", {}).items()
    ]
    site_section = (
        "<h2>Sites</h2>\n<p>Per scanner site (the manifest's <code>site</code> column); patient accuracy "
        "with its exact Clopper&ndash;Pearson 95% interval.</p>\n"
        + _table(["site", "patients", "images", "patient accuracy", "95% CI", "image accuracy"], site_rows)
        if site_rows
        else ""
    )
    loc = metrics["localisation"]
    loc_rows = [
        (_human(name), c["images"], c["pointing_game_true_class"], c["iou_true_class"])
        for name, c in loc.get("per_class", {}).items()
    ]
    ci_header = ["class", "sensitivity", "specificity", "PPV", "NPV", "method"]
    per_class_ci = _per_class_ci(metrics["patient_mean"]["per_class"])
    per_class_images_ci = _per_class_ci(metrics["image"]["per_class"])
    calibration = _calibration_section(metrics.get("calibration"))
    plane_rows = [
        (_human(name), plane, c["images"], c["pointing_game_true_class"], c["iou_true_class"])
        for name, planes in loc.get("per_class_plane", {}).items()
        for plane, c in planes.items()
    ]
    variant_rows = [
        (_human(name), variant, c["images"], c["pointing_game_true_class"], c["iou_true_class"])
        for name, variants in loc.get("per_class_variant", {}).items()
        for variant, c in variants.items()
    ]
    loc_site_rows = [
        (site, c["images"], c["pointing_game_true_class"], c["iou_true_class"])
        for site, c in loc.get("per_site", {}).items()
    ]
    comparison = _cam_comparison_section(loc.get("comparison"))
    robustness = _robustness_section(metrics.get("robustness"))
    ood_check = _ood_section(metrics.get("ood", {}).get("check"))
    banner = (
        "<p class='warn'>Evaluated on synthetic phantom images: these numbers say nothing about "
        "performance on patients.</p>"
        if data.get("synthetic")
        else ""
    )
    images = "".join(
        f"<figure><img src='{html.escape(file)}' alt='{html.escape(title)}'><figcaption>"
        f"{html.escape(title)}</figcaption></figure>"
        for title, file in figures.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation of {html.escape(model["name"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.warn {{ background: #fff3cd; border: 1px solid #e0c36c; padding: 0.6rem; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Evaluation of {html.escape(model["name"])} {html.escape(model["version"])}</h1>
{banner}
<p>Model sha256 <code>{html.escape(model["sha256"])}</code>. Data: {data["patients"]} patients,
{data["images"]} images. 95% confidence intervals, each named by its method (bootstraps:
{metrics["bootstrap"]["resamples"]} resamples of patients):</p>
{_methods_section(metrics)}
<h2>Summary</h2>
{_table(["metric", "value", "95% CI", "CI method"], rows)}
<h2>Per class, patient level (mean probability)</h2>
{_table(["class", "patients", "sensitivity", "specificity", "PPV", "NPV", "F1"], per_class)}
<p>95% confidence intervals:</p>
{_table(ci_header, per_class_ci)}
<h2>Per class, image level</h2>
{_table(["class", "images", "sensitivity", "specificity", "PPV", "NPV", "F1"], per_class_images)}
<p>95% confidence intervals:</p>
{_table(ci_header, per_class_images_ci)}
{calibration}
<h2>Gestational-age subgroups</h2>
{_table(["subgroup", "patients", "images", "patient accuracy", "image accuracy"], ga)}
{site_section}
<h2>Localisation</h2>
<p>{loc["images"]} anomaly images with a lesion mask. Pointing game: the peak of the Grad-CAM, mapped
back to the original image through the scan box, lies inside the lesion mask dilated by
{loc["tolerance_px"]} pixels. IoU: CAM thresholded at half its maximum vs the lesion mask.
The heatmaps explain {_CAM_TARGET_WORDS.get(loc.get("cam_target", "logit"), "the class logit")}.</p>
{_table(["class", "images", "pointing game (true class)", "IoU (true class)"], loc_rows)}
<h3>Per class and plane</h3>
{_table(["class", "plane", "images", "pointing game (true class)", "IoU (true class)"], plane_rows)}
<h3>Per class and anomaly variant</h3>
{_table(["class", "variant", "images", "pointing game (true class)", "IoU (true class)"], variant_rows)}
<h3>Per site</h3>
{_table(["site", "images", "pointing game (true class)", "IoU (true class)"], loc_site_rows)}
{comparison}
{robustness}
{ood_check}
<h2>Figures</h2>
{images}
</body></html>
"""


def write_report(evaluation: Evaluation, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluation.metrics
    figures = {
        "Confusion matrices": "confusion.png",
        "ROC curves": "roc.png",
        "Reliability": "reliability.png",
    }
    figure_confusion(metrics, out_dir / figures["Confusion matrices"])
    figure_roc(evaluation, out_dir / figures["ROC curves"])
    figure_reliability(metrics, out_dir / figures["Reliability"])
    if figure_examples(evaluation, out_dir / "cam_examples.png"):
        figures["Grad-CAM examples (one image per anomaly class)"] = "cam_examples.png"
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    report = out_dir / "report.html"
    report.write_text(render_html(metrics, figures), encoding="utf-8")
    return report
